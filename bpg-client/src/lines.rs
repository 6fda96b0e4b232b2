//! Splitting a byte stream into text lines, whatever the chunk boundaries.

/// Buffers bytes and hands out complete lines (without `\n` or `\r\n`). Invalid UTF-8 is
/// replaced, line by line, so a multi-byte character split across chunks survives.
#[derive(Debug, Default)]
pub(crate) struct LineDecoder {
    buffer: Vec<u8>,
}

impl LineDecoder {
    /// Adds a chunk and returns the lines it completed.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<String> {
        let mut lines = Vec::new();
        let mut rest = chunk;
        while let Some(i) = rest.iter().position(|&b| b == b'\n') {
            self.buffer.extend_from_slice(&rest[..i]);
            lines.push(Self::text(std::mem::take(&mut self.buffer)));
            rest = &rest[i + 1..];
        }
        self.buffer.extend_from_slice(rest);
        lines
    }

    /// The unterminated last line, if any; the decoder is empty afterwards.
    pub fn finish(&mut self) -> Option<String> {
        if self.buffer.is_empty() {
            None
        } else {
            Some(Self::text(std::mem::take(&mut self.buffer)))
        }
    }

    fn text(mut line: Vec<u8>) -> String {
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        match String::from_utf8(line) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_across_chunks() {
        let mut d = LineDecoder::default();
        assert_eq!(d.push(b"he"), Vec::<String>::new());
        assert_eq!(d.push(b"llo\r\nwor"), vec!["hello"]);
        assert_eq!(d.push(b"ld\n\nlast"), vec!["world", ""]);
        assert_eq!(d.finish().as_deref(), Some("last"));
        assert_eq!(d.finish(), None);
    }

    #[test]
    fn multibyte_characters_split_between_chunks() {
        let text = "grüße\n".as_bytes();
        let mut d = LineDecoder::default();
        let (a, b) = text.split_at(3);
        assert!(d.push(a).is_empty());
        assert_eq!(d.push(b), vec!["grüße"]);
    }

    #[test]
    fn invalid_utf8_is_replaced() {
        let mut d = LineDecoder::default();
        assert_eq!(d.push(b"a\xffb\n"), vec!["a\u{fffd}b"]);
    }
}
