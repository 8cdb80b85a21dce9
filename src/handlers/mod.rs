//! Handlers turn a routed request into a reply without touching sockets.
