//! Dropping start-up code from the monitor's page tables once the VM runs.
//!
//! Argument parsing, logging set-up, kernel loading and KVM set-up run once; their code
//! pages stay mapped (and counted in RSS) although a running VM never touches them
//! again. Once the vCPUs run we unmap every read-only, file-backed mapping that holds
//! no anonymous (copy-on-write) page (`MADV_DONTNEED`): what the steady state uses
//! faults back in from the page cache, the rest no longer counts against this VM.
//! Mappings with an anonymous page (relocated data, RELRO) are left alone, since
//! dropping those would lose their contents. (`Private_Dirty` is no guide: a freshly
//! written binary's page-cache pages count as dirty until writeback.)

use std::io;

/// One mapping from /proc/self/smaps.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Mapping {
    start: usize,
    end: usize,
    perms: String,
    path: String,
    anonymous_kb: u64,
}

fn parse_smaps(text: &str) -> Vec<Mapping> {
    let mut out: Vec<Mapping> = Vec::new();
    for line in text.lines() {
        let mut parts = line.split_whitespace();
        let Some(first) = parts.next() else { continue };
        if let Some((a, b)) = first.split_once('-').filter(|_| !first.ends_with(':')) {
            if let (Ok(start), Ok(end)) =
                (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16))
            {
                let perms = parts.next().unwrap_or("").to_string();
                let path = parts.nth(3).unwrap_or("").to_string();
                out.push(Mapping {
                    start,
                    end,
                    perms,
                    path,
                    ..Default::default()
                });
                continue;
            }
        }
        let kb = || {
            parts
                .clone()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        if let Some(m) = out.last_mut() {
            if first == "Anonymous:" {
                m.anonymous_kb = kb();
            }
        }
    }
    out
}

fn droppable(m: &Mapping) -> bool {
    m.perms.as_bytes().get(1) == Some(&b'-') && m.path.starts_with('/') && m.anonymous_kb == 0
}

/// Unmap clean read-only file pages; returns how many KiB of mappings were dropped.
pub fn trim_startup_pages() -> io::Result<u64> {
    let text = std::fs::read_to_string("/proc/self/smaps")?;
    let mut dropped = 0;
    for m in parse_smaps(&text).iter().filter(|m| droppable(m)) {
        // SAFETY: the range is a whole mapping of this process, file-backed, not
        // writable and without an anonymous (copied-on-write) page (checked above), so
        // MADV_DONTNEED only drops page-table entries; any later access re-reads the
        // identical bytes from the file.
        let rc = unsafe {
            libc::madvise(
                m.start as *mut libc::c_void,
                m.end - m.start,
                libc::MADV_DONTNEED,
            )
        };
        if rc == 0 {
            dropped += ((m.end - m.start) / 1024) as u64;
        }
    }
    tracing::debug!(dropped_kib = dropped, "dropped start-up pages");
    Ok(dropped)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
5607e4435000-5607e5026000 r-xp 003c8000 fe:00 5557170    /usr/bin/roost
Rss:                3084 kB
Private_Dirty:         0 kB
Anonymous:             0 kB
5607e50ae000-5607e50b6000 r--p 01040000 fe:00 5557170    /usr/bin/roost
Private_Dirty:        32 kB
Anonymous:            32 kB
5607e50b6000-5607e50b7000 r--p 01040000 fe:00 5557170    /usr/bin/fresh
Private_Dirty:         4 kB
Anonymous:             0 kB
5607e50b6000-5607e50b7000 rw-p 01048000 fe:00 5557170    /usr/bin/roost
Private_Dirty:         4 kB
Anonymous:             4 kB
7f4511a00000-7f4519a00000 rw-p 00000000 00:00 0
Private_Dirty:        72 kB
Anonymous:            72 kB
7ffd6b3f0000-7ffd6b3f2000 r-xp 00000000 00:00 0                          [vdso]
Private_Dirty:         0 kB
Anonymous:             0 kB
";

    #[test]
    fn only_clean_read_only_file_mappings_are_dropped() {
        let maps = parse_smaps(SAMPLE);
        assert_eq!(maps.len(), 6);
        let picked: Vec<bool> = maps.iter().map(droppable).collect();
        assert_eq!(picked, vec![true, false, true, false, false, false]);
        assert_eq!(maps[0].start, 0x5607_e443_5000);
    }

    #[test]
    fn trimming_this_process_keeps_it_working() {
        let before = std::fs::read_to_string("/proc/self/status").unwrap();
        trim_startup_pages().unwrap();
        // Code and read-only data fault back in: formatting and reading still work.
        let after = std::fs::read_to_string("/proc/self/status").unwrap();
        assert!(before.contains("VmRSS") && after.contains("VmRSS"));
        assert_eq!(format!("{:?}", [1, 2]), "[1, 2]");
    }
}
