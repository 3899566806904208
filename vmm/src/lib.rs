//! Roost's KVM microVM monitor (library). One `roost vmm` process runs one VM.
