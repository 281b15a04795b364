//! Country names for the same-country option, and the browser's guess at one.
//!
//! Names come from the browser's `Intl.DisplayNames`, in the browser's language; the
//! server (which renders before hydration) shows bare codes.

/// "Germany" in the browser's language; the bare code on the server or in a browser
/// without `Intl.DisplayNames`.
pub fn name(code: &str) -> String {
    #[cfg(feature = "hydrate")]
    if let Some(name) = region_name(code) {
        return name;
    }
    code.to_string()
}

/// "Germany (DE)" in the browser's language; the bare code on the server.
pub fn label(code: &str) -> String {
    let name = name(code);
    if name == code { name } else { format!("{name} ({code})") }
}

#[cfg(feature = "hydrate")]
fn region_name(code: &str) -> Option<String> {
    use wasm_bindgen::{JsCast, JsValue};
    let intl = js_sys::Reflect::get(&js_sys::global(), &"Intl".into()).ok()?;
    let ctor: js_sys::Function = js_sys::Reflect::get(&intl, &"DisplayNames".into()).ok()?.dyn_into().ok()?;
    let options = js_sys::Object::new();
    js_sys::Reflect::set(&options, &"type".into(), &"region".into()).ok()?;
    let names = js_sys::Reflect::construct(&ctor, &js_sys::Array::of2(&JsValue::UNDEFINED, &options)).ok()?;
    let of: js_sys::Function = js_sys::Reflect::get(&names, &"of".into()).ok()?.dyn_into().ok()?;
    of.call1(&names, &code.into()).ok()?.as_string()
}

/// The region of the browser's language ("en-GB" → "GB"), if it is a country code: the
/// list's first guess when the server does not know the connection's country.
#[cfg(feature = "hydrate")]
pub fn browser_country() -> Option<String> {
    let lang = leptos::prelude::window().navigator().language()?;
    let region = lang.split(['-', '_']).nth(1)?;
    protocol::prefs::normalize_country(region)
}
