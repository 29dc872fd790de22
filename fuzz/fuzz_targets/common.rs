//! Shared by the targets (included with `#[path]`, not a crate of its own).

use serde_json::Value;

/// Whether `v` holds a non-integer number: serde_json's default parser may read a float's
/// text back one unit in the last place off, so round trips compare only values without one.
#[allow(dead_code)]
pub fn has_float(v: &Value) -> bool {
    match v {
        Value::Number(n) => n.is_f64(),
        Value::Array(items) => items.iter().any(has_float),
        Value::Object(m) => m.values().any(has_float),
        _ => false,
    }
}

/// One current-thread runtime per process, for the async readers.
#[allow(dead_code)]
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RT.get_or_init(|| tokio::runtime::Builder::new_current_thread().enable_time().build().expect("a tokio runtime"))
}
