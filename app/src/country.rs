//! Country names for the same-country option.
//!
//! Names come from the browser's `Intl.DisplayNames`, in the browser's language; the
//! server (which renders before hydration) shows bare codes.

/// "Germany" in the browser's language; the bare code on the server or in a browser
/// without `Intl.DisplayNames`.
pub fn name(code: &str) -> String {
    crate::platform::region_name(code).unwrap_or_else(|| code.to_string())
}

/// "Germany (DE)" in the browser's language; the bare code on the server.
pub fn label(code: &str) -> String {
    let name = name(code);
    if name == code { name } else { format!("{name} ({code})") }
}
