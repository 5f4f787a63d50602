//! The RTMP handshake (C0/C1/C2 against S0/S1/S2), server side and client
//! side, as I/O-free state machines: the caller feeds whatever bytes its
//! socket produced, in any fragments, and writes out whatever the machine
//! appends to `out`. Both the "simple" handshake of the published spec and the
//! "digest" (Flash Player 9) variant are spoken; the digest one matters because
//! ffmpeg's player refuses a server whose S1/S2 it cannot validate once the
//! server claims a version. Encrypted RTMPE is refused.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::rng::Rng;

/// Size of C1, C2, S1 and S2.
pub const HANDSHAKE_SIZE: usize = 1536;

const RTMP_VERSION: u8 = 3;
const DIGEST_LEN: usize = 32;
/// C2/S2 in digest mode carry their signature in the last 32 bytes.
const SIGNED_LEN: usize = HANDSHAKE_SIZE - DIGEST_LEN;
/// C0 + C1, or S0 + S1.
const VERSION_AND_BLOCK: usize = 1 + HANDSHAKE_SIZE;

/// What nginx-rtmp announces. The first byte must be >= 3: ffmpeg only checks
/// (and then insists on) the S1 digest when it is, and we want to be checked.
const SERVER_VERSION: [u8; 4] = [0x0d, 0x0e, 0x0a, 0x0d];
/// Any non-zero value switches a server to the digest handshake.
const CLIENT_VERSION: [u8; 4] = [0x0c, 0x00, 0x0d, 0x0e];

/// Shared tail of both well-known keys (public, from Flash; not a secret).
const KEY_TAIL: [u8; 32] = [
    0xF0, 0xEE, 0xC2, 0x4A, 0x80, 0x68, 0xBE, 0xE8, 0x2E, 0x00, 0xD0, 0xD1, 0x02, 0x9E, 0x7E, 0x57,
    0x6E, 0xEC, 0x5D, 0x2D, 0x29, 0x80, 0x6F, 0xAB, 0x93, 0xB8, 0xE6, 0x36, 0xCF, 0xEB, 0x31, 0xAE,
];
/// Signs the client's C1 digest; the 62-byte form signs C2.
const FP_KEY_TEXT: &[u8; 30] = b"Genuine Adobe Flash Player 001";
/// Signs the server's S1 digest; the 68-byte form signs S2.
const FMS_KEY_TEXT: &[u8; 36] = b"Genuine Adobe Flash Media Server 001";
const FP_KEY: [u8; 62] = concat_key(FP_KEY_TEXT, &KEY_TAIL);
const FMS_KEY: [u8; 68] = concat_key(FMS_KEY_TEXT, &KEY_TAIL);

const fn concat_key<const N: usize>(text: &[u8], tail: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    let mut i = 0;
    while i < text.len() {
        out[i] = text[i];
        i += 1;
    }
    let mut j = 0;
    while j < tail.len() {
        out[text.len() + j] = tail[j];
        j += 1;
    }
    out
}

type Block = [u8; HANDSHAKE_SIZE];

/// Which handshake a connection ended up using.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeKind {
    /// Spec handshake: S2 echoes C1, C2 echoes S1, nothing is signed.
    Simple,
    /// Digest (FP9) handshake; `schema` 0 puts the digest in the first half of
    /// the block, 1 in the second half.
    Digest { schema: u8 },
}

/// For a log line: `simple handshake`, `digest handshake (schema 0)`.
impl fmt::Display for HandshakeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeKind::Simple => f.write_str("simple handshake"),
            HandshakeKind::Digest { schema } => write!(f, "digest handshake (schema {schema})"),
        }
    }
}

/// Something odd but tolerated in a client's handshake, for the caller to log
/// with the client's address (this machine has none to give).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeRemark {
    /// C1 announces a version but no digest validates: the simple handshake is
    /// all we can do.
    NoDigest { client_version: [u8; 4] },
    /// C2 neither echoes S1 nor is signed over our digest.
    UncheckedC2,
}

impl fmt::Display for HandshakeRemark {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeRemark::NoDigest { client_version: v } => write!(
                f,
                "C1 announces version {}.{}.{}.{} but no digest validates",
                v[0], v[1], v[2], v[3]
            ),
            HandshakeRemark::UncheckedC2 => {
                f.write_str("C2 neither echoes S1 nor carries a valid signature")
            }
        }
    }
}

/// Why a handshake cannot go on. Once returned, the machine keeps returning it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandshakeError {
    /// C0 asked for RTMPE (6 or 8), which we do not implement.
    EncryptedRequested { version: u8 },
    /// C0 is not an RTMP version at all; usually another protocol on our port.
    NotRtmp { version: u8 },
    /// S0 (seen by our client) is not version 3.
    UnexpectedServerVersion { version: u8 },
    /// Digest mode: the server claims a versioned S1 but no digest validates.
    ServerDigestMissing { server_version: [u8; 4] },
    /// Digest mode: S2 is not signed over our C1 digest.
    ServerSignatureMismatch,
    /// `ClientHandshake::process` was called before `start`.
    ClientNotStarted,
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeError::EncryptedRequested { version } => write!(
                f,
                "client asked for RTMP version {version} (encrypted RTMPE), \
                 only plain RTMP version 3 is served"
            ),
            HandshakeError::NotRtmp { version } => {
                write!(f, "client sent version byte 0x{version:02x}")?;
                if let Some(hint) = foreign_protocol_hint(*version) {
                    write!(f, " ({hint})")?;
                }
                write!(f, ", not an RTMP handshake (C0 must be 3)")
            }
            HandshakeError::UnexpectedServerVersion { version } => write!(
                f,
                "server answered with version byte 0x{version:02x} in S0, \
                 expected plain RTMP version 3"
            ),
            HandshakeError::ServerDigestMissing { server_version: v } => write!(
                f,
                "server S1 announces version {}.{}.{}.{} but carries no valid digest \
                 at either schema",
                v[0], v[1], v[2], v[3]
            ),
            HandshakeError::ServerSignatureMismatch => write!(
                f,
                "server S2 is not signed over our C1 digest (last 32 bytes do not match)"
            ),
            HandshakeError::ClientNotStarted => write!(
                f,
                "client handshake got server bytes before start() sent C0+C1"
            ),
        }
    }
}

impl std::error::Error for HandshakeError {}

/// Operators mostly hit `NotRtmp` by pointing the wrong client at the port;
/// naming the likely culprit saves a packet capture.
fn foreign_protocol_hint(byte: u8) -> Option<String> {
    match byte {
        b'G' | b'P' | b'H' | b'O' | b'D' | b'C' => Some(format!(
            "'{}', looks like the start of an HTTP request",
            char::from(byte)
        )),
        0x16 => Some("looks like a TLS ClientHello; rtmps:// sent to a plain RTMP port?".into()),
        0x20..=0x7e => Some(format!("'{}'", char::from(byte))),
        _ => None,
    }
}

/// Outcome of feeding bytes to a handshake.
#[derive(Debug, PartialEq, Eq)]
pub enum Progress {
    /// Needs more input (anything to send has already been appended to `out`).
    InProgress,
    /// Handshake complete; `remaining` are bytes that followed it in the input,
    /// i.e. the start of the chunk stream.
    Done { remaining: Vec<u8> },
}

// ---------------------------------------------------------------------------
// Digest helpers

fn hmac_sha256(key: &[u8]) -> Hmac<Sha256> {
    // HMAC hashes over-long keys and pads short ones, so every length is valid.
    <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC accepts keys of any length")
}

/// Where the 32-byte digest sits in a C1/S1 for the given schema. The sum of
/// four bytes modulo 728 keeps it inside its 764-byte half, so the result is
/// always in bounds for a full block.
fn digest_offset(block: &Block, schema: u8) -> usize {
    let base = if schema == 0 { 8 } else { 772 };
    let sum: usize = block
        .iter()
        .skip(base)
        .take(4)
        .map(|&b| usize::from(b))
        .sum();
    sum % 728 + base + 4
}

/// HMAC over the block with the digest's own 32 bytes left out.
fn block_mac(block: &Block, offset: usize, key: &[u8]) -> Option<Hmac<Sha256>> {
    let before = block.get(..offset)?;
    let after = block.get(offset.checked_add(DIGEST_LEN)?..)?;
    let mut mac = hmac_sha256(key);
    mac.update(before);
    mac.update(after);
    Some(mac)
}

/// The digest found at `schema`, if it validates under `key`.
fn valid_digest(block: &Block, schema: u8, key: &[u8]) -> Option<[u8; DIGEST_LEN]> {
    let offset = digest_offset(block, schema);
    let claimed = block.get(offset..offset + DIGEST_LEN)?;
    block_mac(block, offset, key)?.verify_slice(claimed).ok()?;
    claimed.try_into().ok()
}

/// Writes a digest at `schema` and returns it.
fn imprint_digest(block: &mut Block, schema: u8, key: &[u8]) -> [u8; DIGEST_LEN] {
    let offset = digest_offset(block, schema);
    let digest: [u8; DIGEST_LEN] = match block_mac(block, offset, key) {
        Some(mac) => mac.finalize().into_bytes().into(),
        None => return [0; DIGEST_LEN], // unreachable: offset is always in bounds
    };
    if let Some(slot) = block.get_mut(offset..offset + DIGEST_LEN) {
        slot.copy_from_slice(&digest);
    }
    digest
}

/// Signature for the last 32 bytes of S2/C2: keyed by the peer's digest,
/// itself keyed by the long form of our side's key.
fn tail_signature(long_key: &[u8], peer_digest: &[u8], block: &Block) -> [u8; DIGEST_LEN] {
    let mut derive = hmac_sha256(long_key);
    derive.update(peer_digest);
    let key = derive.finalize().into_bytes();
    let mut mac = hmac_sha256(&key);
    mac.update(&block[..SIGNED_LEN]);
    mac.finalize().into_bytes().into()
}

fn sign_tail(long_key: &[u8], peer_digest: &[u8], block: &mut Block) {
    let sig = tail_signature(long_key, peer_digest, block);
    block[SIGNED_LEN..].copy_from_slice(&sig);
}

fn tail_is_signed(long_key: &[u8], peer_digest: &[u8], block: &Block) -> bool {
    tail_signature(long_key, peer_digest, block) == block[SIGNED_LEN..]
}

// Handshake filler only has to look random to the peer; nothing secret rides
// on it (the digest keys are public knowledge), so this is not a security
// boundary. A clock-seeded generator spares us a `rand` dependency; the
// counter keeps two connections in the same clock tick apart.
fn fill_random(buf: &mut [u8]) {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    Rng::new(nanos ^ COUNTER.fetch_add(0xA076_1D64_78BD_642F, Ordering::Relaxed)).fill(buf);
}

/// Moves bytes from `input` into `buf` until `buf` holds `want`; true when
/// it does. Never buffers beyond `want`, so a peer cannot make us hoard.
fn fill(buf: &mut Vec<u8>, want: usize, input: &mut &[u8]) -> bool {
    let take = want.saturating_sub(buf.len()).min(input.len());
    let (head, rest) = input.split_at(take);
    buf.extend_from_slice(head);
    *input = rest;
    buf.len() >= want
}

fn as_block(bytes: &[u8]) -> Option<&Block> {
    bytes.try_into().ok()
}

// ---------------------------------------------------------------------------
// Server side

enum ServerState {
    AwaitC0C1,
    /// Holds S1 so C2 can be checked against it.
    AwaitC2 {
        s1: Box<Block>,
    },
    Done,
    Failed(HandshakeError),
}

/// Server half: reads C0+C1, answers S0+S1+S2, reads C2.
pub struct ServerHandshake {
    state: ServerState,
    uptime_ms: u32,
    buf: Vec<u8>,
    kind: Option<HandshakeKind>,
    remarks: Vec<HandshakeRemark>,
}

impl ServerHandshake {
    /// `uptime_ms` goes into S1's time field (clients use it as the epoch of
    /// our timestamps).
    pub fn new(uptime_ms: u32) -> Self {
        ServerHandshake {
            state: ServerState::AwaitC0C1,
            uptime_ms,
            buf: Vec::with_capacity(VERSION_AND_BLOCK),
            kind: None,
            remarks: Vec::new(),
        }
    }

    /// Which handshake the client chose; known once C1 has been read.
    pub fn kind(&self) -> Option<HandshakeKind> {
        self.kind
    }

    /// What was odd but tolerated so far.
    pub fn remarks(&self) -> &[HandshakeRemark] {
        &self.remarks
    }

    /// Feed bytes read from the socket; bytes to send are appended to `out`.
    /// After `Done`, further input is handed straight back as `remaining`.
    pub fn process(
        &mut self,
        mut input: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<Progress, HandshakeError> {
        loop {
            match &self.state {
                ServerState::Failed(err) => return Err(err.clone()),
                ServerState::Done => {
                    return Ok(Progress::Done {
                        remaining: input.to_vec(),
                    })
                }
                ServerState::AwaitC0C1 => {
                    // Judge C0 on its own first, so an HTTP client or RTMPE
                    // request is told off without waiting for 1536 more bytes.
                    fill(&mut self.buf, 1, &mut input);
                    if let Some(&version) = self.buf.first() {
                        if let Err(err) = check_client_version(version) {
                            return Err(self.fail(err));
                        }
                    }
                    if !fill(&mut self.buf, VERSION_AND_BLOCK, &mut input) {
                        return Ok(Progress::InProgress);
                    }
                    let s1 = match self.buf.get(1..).and_then(as_block) {
                        Some(c1) => {
                            let (kind, s1) = answer_c1(c1, self.uptime_ms, out);
                            let client_version = [c1[4], c1[5], c1[6], c1[7]];
                            if kind == HandshakeKind::Simple && client_version != [0; 4] {
                                self.remarks
                                    .push(HandshakeRemark::NoDigest { client_version });
                            }
                            self.kind = Some(kind);
                            s1
                        }
                        None => return Ok(Progress::InProgress), // unreachable: buf is full
                    };
                    self.buf.clear();
                    self.state = ServerState::AwaitC2 { s1 };
                }
                ServerState::AwaitC2 { s1 } => {
                    if !fill(&mut self.buf, HANDSHAKE_SIZE, &mut input) {
                        return Ok(Progress::InProgress);
                    }
                    if let (Some(c2), Some(kind)) = (as_block(&self.buf), self.kind) {
                        if !c2_is_checked(kind, s1, c2) {
                            self.remarks.push(HandshakeRemark::UncheckedC2);
                        }
                    }
                    self.buf = Vec::new();
                    self.state = ServerState::Done;
                }
            }
        }
    }

    fn fail(&mut self, err: HandshakeError) -> HandshakeError {
        self.buf = Vec::new();
        self.state = ServerState::Failed(err.clone());
        err
    }
}

fn check_client_version(version: u8) -> Result<(), HandshakeError> {
    match version {
        RTMP_VERSION => Ok(()),
        6 | 8 => Err(HandshakeError::EncryptedRequested { version }),
        _ => Err(HandshakeError::NotRtmp { version }),
    }
}

/// Appends S0, S1 and S2 for a C1 to `out`, choosing the handshake the client
/// speaks; returns that choice and S1. The blocks live on the heap: a connection
/// thread's stack pages stay resident for as long as it runs, and three blocks on
/// the stack here would cost every player that much memory for good.
fn answer_c1(c1: &Block, uptime_ms: u32, out: &mut Vec<u8>) -> (HandshakeKind, Box<Block>) {
    let mut s1: Box<Block> = vec![0u8; HANDSHAKE_SIZE]
        .into_boxed_slice()
        .try_into()
        .unwrap_or_else(|_| unreachable!("the vector has the block's length"));
    fill_random(&mut s1[8..]);
    s1[..4].copy_from_slice(&uptime_ms.to_be_bytes());

    // A zero version means a spec-only client; a non-zero one may still carry
    // no (or a broken) digest, and then the simple handshake is all we can do.
    let client_digest = if c1[4..8] == [0; 4] {
        None
    } else {
        [0u8, 1]
            .into_iter()
            .find_map(|schema| valid_digest(c1, schema, FP_KEY_TEXT).map(|d| (schema, d)))
    };
    let kind = match client_digest {
        Some((schema, _)) => {
            s1[4..8].copy_from_slice(&SERVER_VERSION);
            imprint_digest(&mut s1, schema, FMS_KEY_TEXT);
            HandshakeKind::Digest { schema }
        }
        None => HandshakeKind::Simple,
    };
    out.reserve(1 + 2 * HANDSHAKE_SIZE);
    out.push(RTMP_VERSION);
    out.extend_from_slice(&s1[..]);
    match client_digest {
        Some((_, digest)) => {
            let start = out.len();
            out.resize(start + HANDSHAKE_SIZE, 0);
            if let Some(s2) = out
                .get_mut(start..)
                .and_then(|b| <&mut Block>::try_from(b).ok())
            {
                fill_random(s2);
                sign_tail(&FMS_KEY, &digest, s2);
            }
        }
        None => out.extend_from_slice(c1),
    }
    (kind, s1)
}

/// Whether C2 echoes S1 or is signed over our digest. Clients are lax about C2
/// (ffmpeg's publisher echoes S1 even after a digest handshake), so a mismatch is
/// only worth a remark, never a refusal.
fn c2_is_checked(kind: HandshakeKind, s1: &Block, c2: &Block) -> bool {
    let echoed = c2[8..] == s1[8..];
    let signed = match kind {
        HandshakeKind::Simple => false,
        HandshakeKind::Digest { schema } => {
            let offset = digest_offset(s1, schema);
            s1.get(offset..offset + DIGEST_LEN)
                .is_some_and(|d| tail_is_signed(&FP_KEY, d, c2))
        }
    };
    echoed || signed
}

// ---------------------------------------------------------------------------
// Client side

enum ClientState {
    NotStarted,
    /// `c1_digest` is set in digest mode: S2 must be signed over it.
    AwaitS0S1S2 {
        c1_digest: Option<[u8; DIGEST_LEN]>,
    },
    Done,
    Failed(HandshakeError),
}

/// Client half: sends C0+C1, reads S0+S1+S2, sends C2.
pub struct ClientHandshake {
    digest: bool,
    state: ClientState,
    buf: Vec<u8>,
    kind: Option<HandshakeKind>,
}

impl ClientHandshake {
    /// `digest` selects the FP9 handshake (what ffmpeg and Flash send) instead
    /// of the spec's simple one.
    pub fn new(digest: bool) -> Self {
        ClientHandshake {
            digest,
            state: ClientState::NotStarted,
            buf: Vec::new(),
            kind: None,
        }
    }

    /// Appends C0+C1. Calling it again after the first time does nothing.
    pub fn start(&mut self, out: &mut Vec<u8>) {
        if !matches!(self.state, ClientState::NotStarted) {
            return;
        }
        let mut c1 = [0u8; HANDSHAKE_SIZE];
        fill_random(&mut c1[8..]);
        let c1_digest = if self.digest {
            c1[4..8].copy_from_slice(&CLIENT_VERSION);
            Some(imprint_digest(&mut c1, 0, FP_KEY_TEXT))
        } else {
            None
        };
        out.push(RTMP_VERSION);
        out.extend_from_slice(&c1);
        self.buf = Vec::with_capacity(VERSION_AND_BLOCK + HANDSHAKE_SIZE);
        self.state = ClientState::AwaitS0S1S2 { c1_digest };
    }

    /// What the server answered with; known once S1 has been read. A digest
    /// client talking to a simple-only server ends up `Simple`.
    pub fn kind(&self) -> Option<HandshakeKind> {
        self.kind
    }

    /// Feed bytes from the server; C2 is appended to `out` once S0+S1+S2
    /// are in (and, in digest mode, verified). After `Done`, further input is
    /// handed straight back as `remaining`.
    pub fn process(
        &mut self,
        mut input: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<Progress, HandshakeError> {
        let c1_digest = match &self.state {
            ClientState::NotStarted => return Err(HandshakeError::ClientNotStarted),
            ClientState::Failed(err) => return Err(err.clone()),
            ClientState::Done => {
                return Ok(Progress::Done {
                    remaining: input.to_vec(),
                })
            }
            ClientState::AwaitS0S1S2 { c1_digest } => *c1_digest,
        };
        fill(&mut self.buf, 1, &mut input);
        if let Some(&version) = self.buf.first().filter(|&&v| v != RTMP_VERSION) {
            return Err(self.fail(HandshakeError::UnexpectedServerVersion { version }));
        }
        if !fill(
            &mut self.buf,
            VERSION_AND_BLOCK + HANDSHAKE_SIZE,
            &mut input,
        ) {
            return Ok(Progress::InProgress);
        }
        let (s1, s2) = match (
            self.buf.get(1..VERSION_AND_BLOCK).and_then(as_block),
            self.buf.get(VERSION_AND_BLOCK..).and_then(as_block),
        ) {
            (Some(s1), Some(s2)) => (s1, s2),
            _ => return Ok(Progress::InProgress), // unreachable: buf is full
        };
        match answer_server(c1_digest, s1, s2) {
            Ok((kind, c2)) => {
                self.kind = Some(kind);
                out.extend_from_slice(&c2);
                self.buf = Vec::new();
                self.state = ClientState::Done;
                Ok(Progress::Done {
                    remaining: input.to_vec(),
                })
            }
            Err(err) => Err(self.fail(err)),
        }
    }

    fn fail(&mut self, err: HandshakeError) -> HandshakeError {
        self.buf = Vec::new();
        self.state = ClientState::Failed(err.clone());
        err
    }
}

/// Verifies S1/S2 (digest mode) and builds C2.
fn answer_server(
    c1_digest: Option<[u8; DIGEST_LEN]>,
    s1: &Block,
    s2: &Block,
) -> Result<(HandshakeKind, Block), HandshakeError> {
    // Like ffmpeg: a server version below 3 means a spec-only server, which
    // signs nothing, so there is nothing to check.
    let c1_digest = match c1_digest {
        Some(d) if s1[4] >= 3 => d,
        _ => return Ok((HandshakeKind::Simple, *s1)),
    };
    // Schema 1 first, as ffmpeg does.
    let (schema, s1_digest) = [1u8, 0]
        .into_iter()
        .find_map(|schema| valid_digest(s1, schema, FMS_KEY_TEXT).map(|d| (schema, d)))
        .ok_or_else(|| {
            let mut server_version = [0u8; 4];
            server_version.copy_from_slice(&s1[4..8]);
            HandshakeError::ServerDigestMissing { server_version }
        })?;
    if !tail_is_signed(&FMS_KEY, &c1_digest, s2) {
        return Err(HandshakeError::ServerSignatureMismatch);
    }
    let mut c2 = [0u8; HANDSHAKE_SIZE];
    fill_random(&mut c2);
    sign_tail(&FP_KEY, &s1_digest, &mut c2);
    Ok((HandshakeKind::Digest { schema }, c2))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Independent of the code under test: keys spelled out, offsets and HMACs
    // recomputed from the protocol description.
    const TAIL: [u8; 32] = [
        0xF0, 0xEE, 0xC2, 0x4A, 0x80, 0x68, 0xBE, 0xE8, 0x2E, 0x00, 0xD0, 0xD1, 0x02, 0x9E, 0x7E,
        0x57, 0x6E, 0xEC, 0x5D, 0x2D, 0x29, 0x80, 0x6F, 0xAB, 0x93, 0xB8, 0xE6, 0x36, 0xCF, 0xEB,
        0x31, 0xAE,
    ];

    fn fp_key(full: bool) -> Vec<u8> {
        let mut k = b"Genuine Adobe Flash Player 001".to_vec();
        if full {
            k.extend_from_slice(&TAIL);
        }
        k
    }

    fn fms_key(full: bool) -> Vec<u8> {
        let mut k = b"Genuine Adobe Flash Media Server 001".to_vec();
        if full {
            k.extend_from_slice(&TAIL);
        }
        k
    }

    fn mac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
        let mut m = Hmac::<Sha256>::new_from_slice(key).unwrap();
        for p in parts {
            m.update(p);
        }
        m.finalize().into_bytes().into()
    }

    fn offset(block: &[u8], schema: u8) -> usize {
        let (base, add) = if schema == 0 { (8, 12) } else { (772, 776) };
        block[base..base + 4]
            .iter()
            .map(|&b| b as usize)
            .sum::<usize>()
            % 728
            + add
    }

    fn check_digest(block: &[u8], schema: u8, key: &[u8]) -> Option<[u8; 32]> {
        let o = offset(block, schema);
        let d = mac(key, &[&block[..o], &block[o + 32..]]);
        (d[..] == block[o..o + 32]).then_some(d)
    }

    fn pattern_block(seed: u8) -> Vec<u8> {
        (0..HANDSHAKE_SIZE)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    /// C0+C1 with a digest at `schema`, built without the module's helpers.
    fn digest_c0c1(schema: u8) -> (Vec<u8>, [u8; 32]) {
        let mut c1 = pattern_block(7);
        c1[..4].copy_from_slice(&[0, 0, 0, 0]);
        c1[4..8].copy_from_slice(&[9, 0, 124, 2]);
        let o = offset(&c1, schema);
        let d = mac(&fp_key(false), &[&c1[..o], &c1[o + 32..]]);
        c1[o..o + 32].copy_from_slice(&d);
        let mut v = vec![3];
        v.extend_from_slice(&c1);
        (v, d)
    }

    /// Feeds `bytes` to one side's `process`, whole or a byte at a time.
    fn feed(
        bytes: &[u8],
        bytewise: bool,
        mut process: impl FnMut(&[u8]) -> Result<Progress, HandshakeError>,
    ) -> Result<Progress, HandshakeError> {
        if !bytewise {
            return process(bytes);
        }
        let mut last = Ok(Progress::InProgress);
        for b in bytes {
            assert_eq!(last, Ok(Progress::InProgress));
            last = process(std::slice::from_ref(b));
        }
        last
    }

    fn run_pair(digest: bool, bytewise: bool) -> (ServerHandshake, ClientHandshake) {
        let mut client = ClientHandshake::new(digest);
        let mut server = ServerHandshake::new(1234);
        let mut c0c1 = Vec::new();
        client.start(&mut c0c1);
        assert_eq!(c0c1.len(), 1 + HANDSHAKE_SIZE);

        let mut s012 = Vec::new();
        let p = feed(&c0c1, bytewise, |b| server.process(b, &mut s012)).unwrap();
        assert_eq!(p, Progress::InProgress);
        assert_eq!(s012.len(), 1 + 2 * HANDSHAKE_SIZE);
        assert_eq!(&s012[1..5], &1234u32.to_be_bytes());

        let mut c2 = Vec::new();
        let p = feed(&s012, bytewise, |b| client.process(b, &mut c2)).unwrap();
        assert_eq!(p, Progress::Done { remaining: vec![] });
        assert_eq!(c2.len(), HANDSHAKE_SIZE);

        let mut nothing = Vec::new();
        let p = feed(&c2, bytewise, |b| server.process(b, &mut nothing)).unwrap();
        assert_eq!(p, Progress::Done { remaining: vec![] });
        assert!(nothing.is_empty());

        if digest {
            // C2 must be signed with the 62-byte player key over S1's digest.
            let s1 = &s012[1..1 + HANDSHAKE_SIZE];
            let sd = check_digest(s1, 0, &fms_key(false)).expect("S1 digest at schema 0");
            let key = mac(&fp_key(true), &[&sd]);
            assert_eq!(mac(&key, &[&c2[..1504]])[..], c2[1504..]);
        } else {
            assert_eq!(c2[..], s012[1..1 + HANDSHAKE_SIZE]);
        }
        (server, client)
    }

    #[test]
    fn digest_pair_whole_and_bytewise() {
        for bytewise in [false, true] {
            let (s, c) = run_pair(true, bytewise);
            assert_eq!(s.kind(), Some(HandshakeKind::Digest { schema: 0 }));
            assert_eq!(c.kind(), Some(HandshakeKind::Digest { schema: 0 }));
        }
    }

    #[test]
    fn simple_pair_whole_and_bytewise() {
        for bytewise in [false, true] {
            let (s, c) = run_pair(false, bytewise);
            assert_eq!(s.kind(), Some(HandshakeKind::Simple));
            assert_eq!(c.kind(), Some(HandshakeKind::Simple));
        }
    }

    #[test]
    fn server_s1_s2_validate_independently() {
        for schema in [0u8, 1] {
            let (c0c1, client_digest) = digest_c0c1(schema);
            let mut server = ServerHandshake::new(0xdead_beef);
            let mut out = Vec::new();
            server.process(&c0c1, &mut out).unwrap();
            assert_eq!(server.kind(), Some(HandshakeKind::Digest { schema }));
            assert_eq!(out[0], 3);
            let s1 = &out[1..1 + HANDSHAKE_SIZE];
            let s2 = &out[1 + HANDSHAKE_SIZE..];
            assert_eq!(&s1[..4], &[0xde, 0xad, 0xbe, 0xef]);
            assert!(s1[4] >= 3, "ffmpeg only validates S1 when S1[4] >= 3");
            assert!(check_digest(s1, schema, &fms_key(false)).is_some());
            let key = mac(&fms_key(true), &[&client_digest]);
            assert_eq!(mac(&key, &[&s2[..1504]])[..], s2[1504..]);
        }
    }

    #[test]
    fn kinds_and_remarks_read_as_words() {
        assert_eq!(HandshakeKind::Simple.to_string(), "simple handshake");
        assert_eq!(
            HandshakeKind::Digest { schema: 0 }.to_string(),
            "digest handshake (schema 0)"
        );
        let (server, _) = run_pair(true, false);
        assert_eq!(server.remarks(), [], "a good digest pair is unremarkable");
        // A versioned C1 without a valid digest, then a C2 that is neither an echo
        // nor signed: both tolerated, both remarked for the caller's log.
        let mut c0c1 = vec![3u8; 1 + HANDSHAKE_SIZE];
        c0c1[5..9].copy_from_slice(&[9, 0, 124, 2]);
        let mut server = ServerHandshake::new(0);
        server.process(&c0c1, &mut Vec::new()).unwrap();
        let done = server
            .process(&[7u8; HANDSHAKE_SIZE], &mut Vec::new())
            .unwrap();
        assert_eq!(done, Progress::Done { remaining: vec![] });
        assert_eq!(server.kind(), Some(HandshakeKind::Simple));
        let remarks: Vec<String> = server.remarks().iter().map(|r| r.to_string()).collect();
        assert_eq!(
            remarks,
            [
                "C1 announces version 9.0.124.2 but no digest validates",
                "C2 neither echoes S1 nor carries a valid signature"
            ]
        );
    }

    #[test]
    fn schema_one_is_detected() {
        let (c0c1, _) = digest_c0c1(1);
        // Make sure this C1 would not also pass as schema 0.
        assert!(check_digest(&c0c1[1..], 0, &fp_key(false)).is_none());
        let mut server = ServerHandshake::new(0);
        server.process(&c0c1, &mut Vec::new()).unwrap();
        assert_eq!(server.kind(), Some(HandshakeKind::Digest { schema: 1 }));
    }

    #[test]
    fn wrong_versions_are_refused_on_first_byte() {
        for (v, expected, text) in [
            (
                6u8,
                HandshakeError::EncryptedRequested { version: 6 },
                "RTMP version 6 (encrypted RTMPE)",
            ),
            (
                8,
                HandshakeError::EncryptedRequested { version: 8 },
                "only plain RTMP version 3 is served",
            ),
            (0x47, HandshakeError::NotRtmp { version: 0x47 }, "HTTP"),
            (
                0,
                HandshakeError::NotRtmp { version: 0 },
                "version byte 0x00, not an RTMP handshake (C0 must be 3)",
            ),
        ] {
            let mut server = ServerHandshake::new(0);
            let mut out = Vec::new();
            let err = server.process(&[v], &mut out).unwrap_err();
            assert_eq!(err, expected);
            assert!(err.to_string().contains(text), "{err}");
            assert!(out.is_empty());
            // Sticky: later input gets the same answer.
            assert_eq!(server.process(&[3; 10], &mut out), Err(expected));
        }
        let msg = HandshakeError::NotRtmp { version: 0x47 }.to_string();
        assert!(msg.starts_with("client sent version byte 0x47"), "{msg}");
        assert!(
            msg.ends_with("not an RTMP handshake (C0 must be 3)"),
            "{msg}"
        );
    }

    #[test]
    fn corrupt_digest_falls_back_to_simple() {
        let (mut c0c1, _) = digest_c0c1(0);
        let o = 1 + offset(&c0c1[1..], 0);
        c0c1[o] ^= 0xff;
        let mut server = ServerHandshake::new(0);
        let mut out = Vec::new();
        server.process(&c0c1, &mut out).unwrap();
        assert_eq!(server.kind(), Some(HandshakeKind::Simple));
        assert_eq!(&out[1 + 4..1 + 8], &[0, 0, 0, 0]);
        assert_eq!(out[1 + HANDSHAKE_SIZE..], c0c1[1..]);
    }

    #[test]
    fn client_rejects_bad_server_signature_and_digest() {
        let mut client = ClientHandshake::new(true);
        let mut c0c1 = Vec::new();
        client.start(&mut c0c1);
        let mut s012 = Vec::new();
        ServerHandshake::new(0).process(&c0c1, &mut s012).unwrap();

        let mut bad_s2 = s012.clone();
        *bad_s2.last_mut().unwrap() ^= 1;
        let mut c = ClientHandshake::new(true);
        c.start(&mut Vec::new());
        // A fresh client has a different C1 digest, so even the intact S2 fails...
        assert_eq!(
            c.process(&s012, &mut Vec::new()),
            Err(HandshakeError::ServerSignatureMismatch)
        );
        // ...and for the right client a flipped signature byte fails too.
        let mut out = Vec::new();
        assert_eq!(
            client.process(&bad_s2, &mut out),
            Err(HandshakeError::ServerSignatureMismatch)
        );
        assert!(out.is_empty());

        let mut bad_s1 = s012.clone();
        let o = 1 + offset(&s012[1..1 + HANDSHAKE_SIZE], 0);
        bad_s1[o] ^= 1;
        let mut c = ClientHandshake::new(true);
        c.start(&mut Vec::new());
        let err = c.process(&bad_s1, &mut Vec::new()).unwrap_err();
        assert!(matches!(err, HandshakeError::ServerDigestMissing { .. }));
        assert!(err.to_string().contains("13.14.10.13"), "{err}");
    }

    #[test]
    fn client_checks_server_version_and_start() {
        let mut c = ClientHandshake::new(false);
        assert_eq!(
            c.process(&[3], &mut Vec::new()),
            Err(HandshakeError::ClientNotStarted)
        );
        c.start(&mut Vec::new());
        assert_eq!(
            c.process(&[6], &mut Vec::new()),
            Err(HandshakeError::UnexpectedServerVersion { version: 6 })
        );
    }

    #[test]
    fn digest_client_accepts_simple_server() {
        // A spec-only server: S1 version zero, S2 echoes C1.
        let mut client = ClientHandshake::new(true);
        let mut c0c1 = Vec::new();
        client.start(&mut c0c1);
        let mut s012 = vec![3];
        s012.extend_from_slice(&pattern_block(1));
        s012[5..9].copy_from_slice(&[0; 4]);
        s012.extend_from_slice(&c0c1[1..]);
        let mut c2 = Vec::new();
        let p = client.process(&s012, &mut c2).unwrap();
        assert_eq!(p, Progress::Done { remaining: vec![] });
        assert_eq!(client.kind(), Some(HandshakeKind::Simple));
        assert_eq!(c2[..], s012[1..1 + HANDSHAKE_SIZE]);
    }

    #[test]
    fn trailing_bytes_are_handed_back() {
        let (c0c1, _) = digest_c0c1(0);
        let c2 = pattern_block(99);
        let chunk_stream: Vec<u8> = (0..5000u32).map(|i| i as u8).collect();

        // Everything in one read: C0+C1+C2+chunk data.
        let mut all = c0c1.clone();
        all.extend_from_slice(&c2);
        all.extend_from_slice(&chunk_stream);
        let mut server = ServerHandshake::new(0);
        let mut out = Vec::new();
        let p = server.process(&all, &mut out).unwrap();
        assert_eq!(
            p,
            Progress::Done {
                remaining: chunk_stream.clone()
            }
        );
        assert_eq!(out.len(), 1 + 2 * HANDSHAKE_SIZE);
        assert!(server.buf.capacity() == 0);

        // C2's tail and chunk data arriving together after S0-S2 went out.
        let mut server = ServerHandshake::new(0);
        server.process(&c0c1, &mut Vec::new()).unwrap();
        server.process(&c2[..100], &mut Vec::new()).unwrap();
        let mut rest = c2[100..].to_vec();
        rest.extend_from_slice(b"\x02chunk");
        assert_eq!(
            server.process(&rest, &mut Vec::new()),
            Ok(Progress::Done {
                remaining: b"\x02chunk".to_vec()
            })
        );
        // Later reads pass straight through.
        assert_eq!(
            server.process(b"more", &mut Vec::new()),
            Ok(Progress::Done {
                remaining: b"more".to_vec()
            })
        );

        // Client side: bytes after S2.
        let mut client = ClientHandshake::new(true);
        let mut c0c1 = Vec::new();
        client.start(&mut c0c1);
        let mut s012 = Vec::new();
        ServerHandshake::new(0).process(&c0c1, &mut s012).unwrap();
        s012.extend_from_slice(b"xyz");
        assert_eq!(
            client.process(&s012, &mut Vec::new()),
            Ok(Progress::Done {
                remaining: b"xyz".to_vec()
            })
        );
    }

    #[test]
    fn buffering_stays_bounded() {
        let (c0c1, _) = digest_c0c1(0);
        let mut server = ServerHandshake::new(0);
        let mut out = Vec::new();
        for b in &c0c1 {
            server.process(std::slice::from_ref(b), &mut out).unwrap();
            assert!(server.buf.len() <= 1 + HANDSHAKE_SIZE);
        }
        assert!(server.buf.capacity() <= 1 + HANDSHAKE_SIZE);
    }

    #[test]
    fn key_constants_match_the_spelled_out_keys() {
        assert_eq!(FP_KEY[..], fp_key(true)[..]);
        assert_eq!(FMS_KEY[..], fms_key(true)[..]);
    }
}
