//! Roost's containerd driver: images, containers and tasks through containerd's gRPC API.
