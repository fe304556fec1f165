//! The byte layout of tables in Redis, key names, and the RESP encoding of the
//! writes a flush sends.
//!
//! A table is one sorted set whose members all have score 0, so Redis orders
//! them by their bytes (`ZRANGEBYLEX`). A member is `esc(key) 00 00 value`, where
//! `esc` doubles a zero byte as `00 FF`: the order of members is the order of
//! their keys, and every member of one key lies in `[esc(key) 00 00, esc(key)
//! 00 01)`. So a range of keys is one lexicographic range of members, a `get` is
//! a range holding one member, a `put` removes that range and adds a member,
//! and a range delete is one `ZREMRANGEBYLEX`: every table operation is one
//! native command, with no read before a write.

/// The member of a table row.
pub(super) fn member(key: &[u8], value: &[u8], out: &mut Vec<u8>) {
    escape_into(key, out);
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(value);
}

/// The key (unescaped into `key`) and value of a member; `None`: not a member
/// this layout writes.
pub(super) fn split_member<'a>(member: &'a [u8], key: &mut Vec<u8>) -> Option<&'a [u8]> {
    key.clear();
    let mut i = 0;
    while i < member.len() {
        match (member[i], member.get(i + 1)) {
            (0, Some(0)) => return Some(&member[i + 2..]),
            (0, Some(0xFF)) => {
                key.push(0);
                i += 2;
            }
            (0, _) => return None,
            (b, _) => {
                key.push(b);
                i += 1;
            }
        }
    }
    None
}

fn escape_into(key: &[u8], out: &mut Vec<u8>) {
    for &b in key {
        out.push(b);
        if b == 0 {
            out.push(0xFF);
        }
    }
}

fn bound(mark: u8, key: &[u8], tail: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + 3);
    out.push(mark);
    escape_into(key, &mut out);
    out.extend_from_slice(tail);
    out
}

/// Lex bound: members of keys at or after `key`.
pub(super) fn from_key(key: &[u8]) -> Vec<u8> {
    bound(b'[', key, &[0, 0])
}

/// Lex bound: members of keys before `key`.
pub(super) fn before_key(key: &[u8]) -> Vec<u8> {
    bound(b'(', key, &[0, 0])
}

/// Lex bound: members of keys up to `key` included.
pub(super) fn through_key(key: &[u8]) -> Vec<u8> {
    bound(b'(', key, &[0, 1])
}

/// Lex bound: members after `member` (where a chunked scan goes on).
pub(super) fn after_member(member: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(member.len() + 1);
    out.push(b'(');
    out.extend_from_slice(member);
    out
}

/// Commands encoded in the protocol's array form, ready to send as they are.
#[derive(Default)]
pub(super) struct Resp {
    pub buf: Vec<u8>,
    pub commands: usize,
}

impl Resp {
    pub fn cmd(&mut self, args: &[&[u8]]) {
        self.head(args.len());
        for a in args {
            self.arg(a);
        }
    }

    /// Starts a command of `n` arguments, given next with [`Resp::arg`].
    pub fn head(&mut self, n: usize) {
        self.commands += 1;
        self.buf.push(b'*');
        self.number(n);
    }

    pub fn arg(&mut self, a: &[u8]) {
        self.buf.push(b'$');
        self.number(a.len());
        self.buf.extend_from_slice(a);
        self.buf.extend_from_slice(b"\r\n");
    }

    fn number(&mut self, n: usize) {
        self.buf.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
        self.buf.extend_from_slice(b"\r\n");
    }
}

/// Commands cut into [`Resp`]s of about [`Chunks::SIZE`] bytes: a flush never
/// holds its commands in one growing buffer, and a write that need not be atomic
/// is sent a chunk at a time.
#[derive(Default)]
pub(super) struct Chunks {
    pub done: Vec<Resp>,
    pub current: Resp,
}

impl Chunks {
    const SIZE: usize = 4 << 20;

    /// Where the next command goes (after the one just written, if the chunk is full).
    pub fn next(&mut self) -> &mut Resp {
        if self.current.buf.len() >= Self::SIZE {
            self.done.push(std::mem::take(&mut self.current));
        }
        &mut self.current
    }

    pub fn finish(mut self) -> Vec<Resp> {
        if self.current.commands > 0 {
            self.done.push(self.current);
        }
        self.done
    }
}

/// Escapes the glob characters of `s` for `SCAN MATCH`.
pub(super) fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(key: &[u8], value: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        member(key, value, &mut out);
        out
    }

    /// Lexicographic order of members is the order of keys, whatever the values,
    /// and the bounds cut exactly at keys.
    #[test]
    fn members_sort_as_their_keys_and_bounds_cut_at_keys() {
        let keys: Vec<&[u8]> = vec![b"", b"\x00", b"\x00\x00", b"\x00\x01", b"\x00\xFF", b"\x01", b"a", b"a\x00", b"a\x00\xFF", b"ab", b"\xFF", b"\xFF\x00"];
        for (i, a) in keys.iter().enumerate() {
            for (j, b) in keys.iter().enumerate() {
                for (va, vb) in [(&b""[..], &b"\xFF\xFF"[..]), (b"\xFF\xFF", b""), (b"z", b"\x00")] {
                    assert_eq!(m(a, va).cmp(&m(b, vb)), i.cmp(&j).then(va.cmp(vb)), "{a:?} {b:?}");
                }
                let member = m(a, b"v");
                let lex = |bound: Vec<u8>| bound[1..].to_vec();
                assert_eq!(member.as_slice() >= lex(from_key(b)).as_slice(), a >= b, "from {b:?}: {a:?}");
                assert_eq!(member.as_slice() < lex(before_key(b)).as_slice(), a < b, "before {b:?}: {a:?}");
                assert_eq!(member.as_slice() < lex(through_key(b)).as_slice(), a <= b, "through {b:?}: {a:?}");
            }
            let mut key = Vec::new();
            assert_eq!(split_member(&m(a, b"\x00\x00v"), &mut key), Some(&b"\x00\x00v"[..]));
            assert_eq!(key, *a);
        }
        assert_eq!(split_member(b"ab", &mut Vec::new()), None, "no terminator");
        assert_eq!(split_member(b"a\x00\x07", &mut Vec::new()), None, "a bad escape");
    }

    #[test]
    fn commands_are_encoded_as_arrays_of_bulk_strings() {
        let mut r = Resp::default();
        r.cmd(&[b"SET", b"k", b""]);
        assert_eq!(r.buf, b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n");
        assert_eq!(r.commands, 1);
        assert_eq!(glob_escape("a*b[1]?\\"), "a\\*b\\[1\\]\\?\\\\");
    }
}
