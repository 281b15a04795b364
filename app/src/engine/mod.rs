//! The client engine's state, shared with every component through context.
//!
//! Components only read these signals; the socket task (browser only, see
//! [`socket`]) is the one writer, through [`Engine::apply`].

#[cfg(feature = "hydrate")]
mod socket;

use leptos::prelude::*;
use protocol::{OnlineCounts, ServerMsg};

/// The state of the link to the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link {
    /// Server-rendered page, or the first connection attempt is under way.
    Connecting,
    /// The server said `welcome`.
    Connected,
    /// The connection dropped; the next attempt is scheduled.
    Reconnecting,
}

/// Handle on the engine's signals (cheap to copy).
#[derive(Clone, Copy, Debug)]
pub struct Engine {
    /// Connection state.
    pub link: RwSignal<Link>,
    /// Latest online counts from the server; `None` until the first `welcome`.
    pub online: RwSignal<Option<OnlineCounts>>,
}

impl Engine {
    /// Creates the engine and provides it to the component tree below.
    pub fn provide() -> Self {
        let engine = Self { link: RwSignal::new(Link::Connecting), online: RwSignal::new(None) };
        provide_context(engine);
        engine
    }

    /// The engine provided by [`crate::App`].
    pub fn expect() -> Self {
        expect_context::<Self>()
    }

    /// Opens the signaling socket (browser only; a no-op when rendering on the server).
    pub fn start(self) {
        #[cfg(feature = "hydrate")]
        socket::start(self);
    }

    /// Applies a message from the server to the state.
    pub fn apply(&self, msg: &ServerMsg) {
        match msg {
            ServerMsg::Welcome { online, .. } => {
                self.link.set(Link::Connected);
                self.online.set(Some(*online));
            }
            ServerMsg::Online(counts) => self.online.set(Some(*counts)),
            _ => {}
        }
    }
}
