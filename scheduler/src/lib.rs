//! Roost's CPU/memory admission, placement and real-time enforcement.
