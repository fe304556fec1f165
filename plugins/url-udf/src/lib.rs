//! Example UDF plugin: scalar functions a pipeline step calls by name.
//!
//! - `domain(url: str) -> str?`: the lowercase host of a URL.
//! - `query_param(url: str, name: str) -> str?`: a query parameter's raw value.
//! - `bucket(id: str, n: int) -> int`: a stable bucket in `0..n` (FNV-1a),
//!   the same on every host and every run, e.g. for A/B splits.

use streamhost_sdk::Error;

/// The lowercase host of `url` (`https://User@WWW.Example.com:8080/a?b` ->
/// `www.example.com`); a URL without a scheme is taken as starting at the
/// host. Null when there is no host.
pub fn domain(url: String) -> Option<String> {
    let rest = match url.find("://") {
        Some(i) => &url[i + 3..],
        None => url.strip_prefix("//").unwrap_or(&url),
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit('@').next().unwrap_or("");
    let host = if let Some(v6) = host_port.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        host_port.split(':').next().unwrap_or("")
    };
    let host = host.trim().trim_end_matches('.');
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

/// The raw value of query parameter `name` in `url` (first occurrence; a
/// bare `?flag` gives ""). Null when absent.
pub fn query_param(url: String, name: String) -> Option<String> {
    let query = url.split_once('?')?.1;
    let query = query.split('#').next().unwrap_or("");
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then(|| v.to_string())
    })
}

/// A stable bucket of `id` in `0..n`: FNV-1a 64 of the UTF-8 bytes, mod n.
pub fn bucket(id: String, n: i64) -> Result<i64, Error> {
    if n <= 0 {
        return Err(Error::new(format!("bucket count must be positive, got {n}")));
    }
    Ok((fnv1a64(id.as_bytes()) % n as u64) as i64)
}

fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

streamhost_sdk::udf!(domain, query_param, bucket);

#[cfg(test)]
mod tests {
    use super::*;
    use streamhost_sdk::udf::{call_rows, signature, Scalar, ScalarType};

    fn s(v: &str) -> String {
        v.to_string()
    }

    #[test]
    fn domains() {
        assert_eq!(domain(s("https://User:pw@WWW.Example.com:8080/a/b?c=d#e")).as_deref(), Some("www.example.com"));
        assert_eq!(domain(s("example.org/path")).as_deref(), Some("example.org"));
        assert_eq!(domain(s("//cdn.example.net/x.js")).as_deref(), Some("cdn.example.net"));
        assert_eq!(domain(s("http://[::1]:9000/")).as_deref(), Some("::1"));
        assert_eq!(domain(s("http://example.com.?q")).as_deref(), Some("example.com"));
        assert_eq!(domain(s("")), None);
        assert_eq!(domain(s("https:///nohost")), None);
    }

    #[test]
    fn query_params() {
        let url = s("https://x.io/p?utm_source=mail&flag&id=42#frag");
        assert_eq!(query_param(url.clone(), s("utm_source")).as_deref(), Some("mail"));
        assert_eq!(query_param(url.clone(), s("flag")).as_deref(), Some(""));
        assert_eq!(query_param(url.clone(), s("id")).as_deref(), Some("42"));
        assert_eq!(query_param(url, s("missing")), None);
        assert_eq!(query_param(s("https://x.io/p"), s("id")), None);
    }

    #[test]
    fn buckets_are_stable_and_in_range() {
        // FNV-1a 64 of "" and "a" are published constants.
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(bucket(s("a"), 1000).unwrap(), (0xaf63_dc4c_8601_ec8c_u64 % 1000) as i64);
        let mut seen = [0usize; 10];
        for i in 0..10_000 {
            let b = bucket(format!("u-{i}"), 10).unwrap();
            assert!((0..10).contains(&b));
            seen[b as usize] += 1;
        }
        assert!(seen.iter().all(|&c| (800..1200).contains(&c)), "{seen:?}");
        assert_eq!(bucket(s("x"), 0).unwrap_err().message(), "bucket count must be positive, got 0");
    }

    #[test]
    fn signatures_come_from_the_types() {
        let sig = signature("bucket", &bucket);
        assert_eq!(sig.params, vec![ScalarType::Str, ScalarType::Int]);
        assert_eq!(sig.result, ScalarType::Int);
        assert_eq!(signature("domain", &domain).params, vec![ScalarType::Str]);
        assert_eq!(signature("domain", &domain).result, ScalarType::Str);
    }

    #[test]
    fn rows_fail_alone() {
        let rows = vec![
            vec![Scalar::Str(s("u-1")), Scalar::Int(4)],
            vec![Scalar::Str(s("u-1")), Scalar::Int(0)],
            vec![Scalar::Int(1), Scalar::Int(4)],
            vec![Scalar::Str(s("u-1"))],
        ];
        let out = call_rows(&bucket, rows);
        assert_eq!(out[0], Ok(Scalar::Int(bucket(s("u-1"), 4).unwrap())));
        assert_eq!(out[1], Err(s("bucket count must be positive, got 0")));
        assert_eq!(out[2], Err(s("argument 1: expected str, got int")));
        assert_eq!(out[3], Err(s("expected 2 argument(s), got 1")));
        assert_eq!(call_rows(&domain, vec![vec![Scalar::Str(s("http://A.b/"))]]), vec![Ok(Scalar::Str(s("a.b")))]);
    }
}
