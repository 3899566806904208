//! Host profile (CPU partition, reserved memory, limits) and topology discovery.
