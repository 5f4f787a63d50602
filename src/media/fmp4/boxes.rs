//! ISO BMFF box writing on a byte vector: a box is its 32-bit size, its type and
//! its body; a full box adds a version byte and 24 bits of flags. Sizes are
//! patched in when the box is closed, so nested boxes are written in one pass
//! without knowing their lengths up front.

/// Writes boxes into a `Vec<u8>`.
#[derive(Debug, Default)]
pub struct BoxWriter {
    pub out: Vec<u8>,
    /// Where each open box starts, innermost last.
    open: Vec<usize>,
}

impl BoxWriter {
    pub fn new() -> BoxWriter {
        BoxWriter::default()
    }

    pub fn with_capacity(n: usize) -> BoxWriter {
        BoxWriter {
            out: Vec::with_capacity(n),
            open: Vec::new(),
        }
    }

    /// Opens a box of `kind`; close it with [`BoxWriter::end`].
    pub fn start(&mut self, kind: &[u8; 4]) {
        self.open.push(self.out.len());
        self.out.extend_from_slice(&[0; 4]);
        self.out.extend_from_slice(kind);
    }

    /// Opens a full box (version and flags after the type).
    pub fn start_full(&mut self, kind: &[u8; 4], version: u8, flags: u32) {
        self.start(kind);
        self.u32(u32::from(version) << 24 | (flags & 0x00ff_ffff));
    }

    /// Closes the innermost open box, writing its size.
    pub fn end(&mut self) {
        let start = self.open.pop().expect("end() without an open box");
        let size = u32::try_from(self.out.len() - start).expect("box larger than 4 GiB");
        self.out[start..start + 4].copy_from_slice(&size.to_be_bytes());
    }

    /// A whole box whose body is `body`.
    pub fn leaf(&mut self, kind: &[u8; 4], body: &[u8]) {
        self.start(kind);
        self.bytes(body);
        self.end();
    }

    pub fn u8(&mut self, v: u8) {
        self.out.push(v);
    }

    pub fn u16(&mut self, v: u16) {
        self.out.extend_from_slice(&v.to_be_bytes());
    }

    pub fn u24(&mut self, v: u32) {
        self.out.extend_from_slice(&v.to_be_bytes()[1..]);
    }

    pub fn u32(&mut self, v: u32) {
        self.out.extend_from_slice(&v.to_be_bytes());
    }

    pub fn i32(&mut self, v: i32) {
        self.out.extend_from_slice(&v.to_be_bytes());
    }

    pub fn u64(&mut self, v: u64) {
        self.out.extend_from_slice(&v.to_be_bytes());
    }

    pub fn zeros(&mut self, n: usize) {
        self.out.resize(self.out.len() + n, 0);
    }

    pub fn bytes(&mut self, b: &[u8]) {
        self.out.extend_from_slice(b);
    }

    /// The unity matrix of `mvhd` and `tkhd`.
    pub fn unity_matrix(&mut self) {
        for v in [0x0001_0000, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000u32] {
            self.u32(v);
        }
    }

    /// The position where the next byte goes (for offsets patched later).
    pub fn position(&self) -> usize {
        self.out.len()
    }

    /// Overwrites four bytes at `at` (an offset reserved earlier).
    pub fn patch_u32(&mut self, at: usize, v: u32) {
        self.out[at..at + 4].copy_from_slice(&v.to_be_bytes());
    }

    pub fn finish(self) -> Vec<u8> {
        debug_assert!(self.open.is_empty(), "unclosed boxes");
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_sizes_are_patched() {
        let mut w = BoxWriter::new();
        w.start(b"moov");
        w.start_full(b"mvhd", 1, 0x000102);
        w.u16(7);
        w.end();
        w.leaf(b"free", b"ab");
        w.end();
        let out = w.finish();
        assert_eq!(
            out,
            [
                0, 0, 0, 32, b'm', b'o', b'o', b'v', //
                0, 0, 0, 14, b'm', b'v', b'h', b'd', 1, 0, 1, 2, 0, 7, //
                0, 0, 0, 10, b'f', b'r', b'e', b'e', b'a', b'b',
            ]
        );
    }
}
