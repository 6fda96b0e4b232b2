//! Backend implementations and middleware layers (filled by the backends issues).
