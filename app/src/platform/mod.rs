//! The platform seam: everything that needs a browser, behind one set of functions,
//! chosen once here.
//!
//! - [`browser`] (feature `hydrate`): the signaling connection (WebSocket, or the HTTP
//!   fallback), camera, microphone and the WebRTC peer, the moderation frame sampler,
//!   storage, and the few DOM and `Intl` helpers the pages use.
//! - `server` (otherwise): the same functions, doing nothing, for server-side rendering.
//!
//! The engine, the pages and the components call `platform::…` and carry no `cfg` of
//! their own. Both sides must offer the same signatures: the server build compiles
//! every page against the stub, the browser build against the real thing.

#[cfg(feature = "hydrate")]
pub mod browser;
#[cfg(feature = "hydrate")]
pub use browser::*;

#[cfg(not(feature = "hydrate"))]
mod server;
#[cfg(not(feature = "hydrate"))]
pub use server::*;
