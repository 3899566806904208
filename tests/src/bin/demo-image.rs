//! Writes the demo busybox image (an OCI layout tarball built from Debian's
//! busybox-static) to the path given:
//! `demo-image OUT.tar [NAME] [--add HOST_FILE[:IMAGE_PATH]]...`.
//!
//! Each `--add` puts a host file into the image (at IMAGE_PATH, default the same path
//! as on the host) together with the shared libraries `ldd` lists for it, in a second
//! layer on top of the busybox one.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

const USAGE: &str = "usage: demo-image OUT.tar [NAME] [--add HOST_FILE[:IMAGE_PATH]]...";

fn main() {
    let mut positional = Vec::new();
    let mut files: Vec<(PathBuf, String)> = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--add" {
            let Some(v) = args.next() else {
                eprintln!("demo-image: --add needs HOST_FILE[:IMAGE_PATH]\n{USAGE}");
                std::process::exit(2);
            };
            let (host, image) = match v.split_once(':') {
                Some((h, i)) => (h.to_string(), i.to_string()),
                None => (v.clone(), v.clone()),
            };
            if !image.starts_with('/') {
                eprintln!("demo-image: --add {v}: the image path must be absolute\n{USAGE}");
                std::process::exit(2);
            }
            files.push((PathBuf::from(host), image));
        } else if a.starts_with('-') {
            eprintln!("demo-image: unknown option {a}\n{USAGE}");
            std::process::exit(2);
        } else {
            positional.push(a);
        }
    }
    if positional.is_empty() || positional.len() > 2 {
        eprintln!("{USAGE}");
        std::process::exit(2);
    }
    let out = positional[0].clone();
    let name = positional
        .get(1)
        .cloned()
        .unwrap_or_else(|| "docker.io/library/busybox:demo".into());
    let dir = tempfile::tempdir().unwrap();
    let digest = if files.is_empty() {
        roost_tests::container::busybox_layout(dir.path(), &name)
    } else {
        match roost_tests::container::busybox_layout_with(dir.path(), &name, &files) {
            Ok(d) => d,
            Err(e) => {
                eprintln!("demo-image: {e:#}");
                std::process::exit(1);
            }
        }
    };
    roost_tests::container::tar_dir(dir.path(), std::path::Path::new(&out));
    println!("{name} {digest}");
}
