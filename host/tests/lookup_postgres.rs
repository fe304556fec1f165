//! A lookup table in PostgreSQL (a server started by the test on 127.0.0.1):
//! one `= ANY($1)` query per request.

#[path = "common/postgres.rs"]
mod postgres_server;

use streamhost::lookup::{Backend, PostgresBackend};

#[test]
fn one_query_answers_every_key_in_order_with_none_for_the_missing() {
    let server = postgres_server::Postgres::start();
    server.sql("CREATE TABLE users (id text PRIMARY KEY, age int, city text); INSERT INTO users SELECT 'u' || i, i, 'c' || (i % 3) FROM generate_series(0, 999) i;");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let query = "SELECT id, json_build_object('age', age, 'city', city)::text FROM users WHERE id = ANY($1)";
    let backend = rt.block_on(PostgresBackend::connect(&server.url, query)).unwrap();
    let keys: Vec<Vec<u8>> = ["u7", "nobody", "u999", "u7", "u0"].iter().map(|k| k.as_bytes().to_vec()).collect();
    let got: Vec<Option<String>> = rt.block_on(backend.get_many(&keys)).unwrap().into_iter().map(|v| v.map(|b| String::from_utf8(b).unwrap())).collect();
    let want = [Some(r#"{"age" : 7, "city" : "c1"}"#), None, Some(r#"{"age" : 999, "city" : "c0"}"#), Some(r#"{"age" : 7, "city" : "c1"}"#), Some(r#"{"age" : 0, "city" : "c0"}"#)];
    assert_eq!(got, want.map(|w| w.map(String::from)));
    assert!(rt.block_on(backend.get_many(&[])).unwrap().is_empty(), "no keys: no rows");
    // Many keys, one query.
    let many: Vec<Vec<u8>> = (0..2000).map(|i| format!("u{i}").into_bytes()).collect();
    let got = rt.block_on(backend.get_many(&many)).unwrap();
    assert_eq!(got.iter().filter(|v| v.is_some()).count(), 1000);

    // A query that does not fit the table is refused when it is prepared, naming it.
    let err = rt.block_on(PostgresBackend::connect(&server.url, "SELECT id FROM nowhere WHERE id = ANY($1)")).err().expect("refused").to_string();
    assert!(err.contains("nowhere") && err.contains("preparing"), "{err}");
}
