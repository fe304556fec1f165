//! SQL: the expression language of the `select` step (`expr`) and, beside
//! it, the `streamhost sql` front end's modules.

pub mod expr;
