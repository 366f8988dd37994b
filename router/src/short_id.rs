//! Short random ids for tracers (and WebSocket clients), like Node's
//! `Utils.shortID()` (`ol0r2s8oml`): ten lowercase base-36 characters.

const ALPHABET: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";

/// A new short id.
pub fn short_id() -> String {
    (0..10)
        .map(|_| ALPHABET[fastrand::usize(..ALPHABET.len())] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn ten_base36_characters_and_distinct() {
        let a = super::short_id();
        assert_eq!(a.len(), 10);
        assert!(a.bytes().all(|b| b.is_ascii_digit() || b.is_ascii_lowercase()));
        assert_ne!(a, super::short_id());
    }
}
