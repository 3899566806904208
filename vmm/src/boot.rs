//! Loading the kernel, initrd and command line, and the boot information the guest reads
//! (`boot_params` for the Linux protocol, `hvm_start_info` for PVH).

use crate::config::{BootProtocol, KernelFormat, VmConfig};
use crate::memory::ram_ranges;
use crate::x86::layout::{
    CMDLINE, HIMEM, LOW_RAM_END, MMIO_GAP_START, PVH_INFO, PVH_MEMMAP, PVH_MODLIST, ZERO_PAGE,
};
use crate::x86::regs::Entry;
use linux_loader::cmdline::Cmdline;
use linux_loader::loader::bootparam::boot_params;
use linux_loader::loader::elf::start_info::{
    hvm_memmap_table_entry, hvm_modlist_entry, hvm_start_info,
};
use linux_loader::loader::{load_cmdline, BzImage, Elf, KernelLoader, PvhBootCapability};
use std::fs::File;
use std::path::PathBuf;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

const E820_RAM: u32 = 1;
const PVH_MAGIC: u32 = 0x336e_c578;
const HDR_MAGIC: u32 = 0x5372_6448; // "HdrS"
const BOOT_FLAG: u16 = 0xaa55;
const LOADER_UNDEFINED: u8 = 0xff;
const MAX_E820: usize = 128;

/// Errors while loading the guest's images.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    /// The kernel file could not be read or is malformed.
    #[error("kernel {path}: cannot load it ({reason}); check it is a complete x86_64 vmlinux or bzImage that fits in guest memory")]
    Kernel {
        /// The path.
        path: PathBuf,
        /// linux-loader's reason.
        reason: String,
    },
    /// The initrd could not be placed.
    #[error("initrd {path}: {reason}")]
    Initrd {
        /// The path.
        path: PathBuf,
        /// What went wrong and what to do.
        reason: String,
    },
    /// The command line could not be built.
    #[error("cmdline: {0}; shorten it or remove unusual characters")]
    Cmdline(String),
    /// A boot structure did not fit.
    #[error("cannot write {0} into guest memory; give the guest more memory")]
    Write(&'static str),
}

/// Load everything and return where the boot vCPU starts.
pub fn load(
    cfg: &VmConfig,
    format: KernelFormat,
    mem: &GuestMemoryMmap,
) -> Result<Entry, BootError> {
    let kerr = |reason: String| BootError::Kernel {
        path: cfg.kernel.clone(),
        reason,
    };
    let mut f = File::open(&cfg.kernel).map_err(|e| kerr(e.to_string()))?;
    let (kernel_end, entry_kind) = match format {
        KernelFormat::Elf => {
            let r = Elf::load(mem, None, &mut f, Some(GuestAddress(HIMEM)))
                .map_err(|e| kerr(e.to_string()))?;
            let pvh = match (r.pvh_boot_cap, cfg.boot) {
                (PvhBootCapability::PvhEntryPresent(a), BootProtocol::Auto) => Some(a.0),
                _ => None,
            };
            (r.kernel_end, (r.kernel_load.0, pvh, None))
        }
        KernelFormat::BzImage => {
            let r = BzImage::load(mem, None, &mut f, Some(GuestAddress(HIMEM)))
                .map_err(|e| kerr(e.to_string()))?;
            // The 64-bit entry sits 0x200 past the protected-mode code's start.
            (
                r.kernel_end,
                (r.kernel_load.0 + 0x200, None, r.setup_header),
            )
        }
    };
    let (linux_entry, pvh_entry, setup_header) = entry_kind;

    let mut cmdline = Cmdline::new(crate::config::MAX_CMDLINE_LEN + 1)
        .map_err(|e| BootError::Cmdline(e.to_string()))?;
    if !cfg.cmdline.is_empty() {
        cmdline
            .insert_str(&cfg.cmdline)
            .map_err(|e| BootError::Cmdline(e.to_string()))?;
    }
    load_cmdline(mem, GuestAddress(CMDLINE), &cmdline)
        .map_err(|e| BootError::Cmdline(e.to_string()))?;
    let cmdline_size = u32::try_from(cfg.cmdline.len() + 1).unwrap_or(u32::MAX);

    let initrd = match &cfg.initrd {
        Some(p) => Some(load_initrd(p, mem, cfg.memory_mib, kernel_end)?),
        None => None,
    };

    let e820 = e820_map(cfg.memory_mib);
    if let Some(rip) = pvh_entry {
        write_start_info(mem, &e820, initrd)?;
        Ok(Entry::Pvh {
            rip,
            start_info: PVH_INFO,
        })
    } else {
        write_boot_params(mem, &e820, initrd, cmdline_size, setup_header)?;
        Ok(Entry::Linux64 {
            rip: linux_entry,
            boot_params: ZERO_PAGE,
        })
    }
}

/// RAM ranges for the guest's memory map.
pub fn e820_map(memory_mib: u64) -> Vec<(u64, u64)> {
    let mut v = vec![(0, LOW_RAM_END)];
    for (start, len) in ram_ranges(memory_mib) {
        if start == 0 {
            if len > HIMEM {
                v.push((HIMEM, len - HIMEM));
            }
        } else {
            v.push((start, len));
        }
    }
    v
}

fn load_initrd(
    path: &PathBuf,
    mem: &GuestMemoryMmap,
    memory_mib: u64,
    kernel_end: u64,
) -> Result<(u64, u64), BootError> {
    let err = |reason: String| BootError::Initrd {
        path: path.clone(),
        reason,
    };
    let mut f = File::open(path).map_err(|e| err(format!("cannot open it: {e}")))?;
    let size = f
        .metadata()
        .map_err(|e| err(format!("cannot stat it: {e}")))?
        .len();
    let low_end = (memory_mib << 20).min(MMIO_GAP_START);
    let addr = low_end.checked_sub(size).map(|a| a & !0xfff);
    let addr = match addr {
        Some(a) if a >= kernel_end => a,
        _ => {
            return Err(err(format!(
                "{size} bytes do not fit between the kernel's end ({kernel_end:#x}) and the end of low memory ({low_end:#x}); give the guest more memory"
            )))
        }
    };
    let len = usize::try_from(size).map_err(|_| err("too large".into()))?;
    mem.read_exact_volatile_from(GuestAddress(addr), &mut f, len)
        .map_err(|e| err(format!("cannot read it into guest memory: {e}")))?;
    Ok((addr, size))
}

fn write_start_info(
    mem: &GuestMemoryMmap,
    e820: &[(u64, u64)],
    initrd: Option<(u64, u64)>,
) -> Result<(), BootError> {
    let mut info = hvm_start_info {
        magic: PVH_MAGIC,
        version: 1,
        cmdline_paddr: CMDLINE,
        memmap_paddr: PVH_MEMMAP,
        memmap_entries: u32::try_from(e820.len()).unwrap_or(0),
        ..Default::default()
    };
    if let Some((paddr, size)) = initrd {
        let m = hvm_modlist_entry {
            paddr,
            size,
            ..Default::default()
        };
        mem.write_obj(m, GuestAddress(PVH_MODLIST))
            .map_err(|_| BootError::Write("the PVH module list"))?;
        info.nr_modules = 1;
        info.modlist_paddr = PVH_MODLIST;
    }
    for (i, &(addr, size)) in (0u64..).zip(e820) {
        let e = hvm_memmap_table_entry {
            addr,
            size,
            type_: E820_RAM,
            reserved: 0,
        };
        let at = PVH_MEMMAP + i * std::mem::size_of::<hvm_memmap_table_entry>() as u64;
        mem.write_obj(e, GuestAddress(at))
            .map_err(|_| BootError::Write("the PVH memory map"))?;
    }
    mem.write_obj(info, GuestAddress(PVH_INFO))
        .map_err(|_| BootError::Write("hvm_start_info"))
}

fn write_boot_params(
    mem: &GuestMemoryMmap,
    e820: &[(u64, u64)],
    initrd: Option<(u64, u64)>,
    cmdline_size: u32,
    setup_header: Option<linux_loader::loader::bootparam::setup_header>,
) -> Result<(), BootError> {
    let mut p = boot_params::default();
    if let Some(h) = setup_header {
        p.hdr = h;
    }
    p.hdr.type_of_loader = LOADER_UNDEFINED;
    p.hdr.boot_flag = BOOT_FLAG;
    p.hdr.header = HDR_MAGIC;
    p.hdr.cmd_line_ptr = u32::try_from(CMDLINE).unwrap_or(0);
    p.hdr.cmdline_size = cmdline_size;
    if p.hdr.kernel_alignment == 0 {
        p.hdr.kernel_alignment = 0x0100_0000;
    }
    if let Some((addr, size)) = initrd {
        p.hdr.ramdisk_image = u32::try_from(addr).unwrap_or(0);
        p.hdr.ramdisk_size = u32::try_from(size).unwrap_or(0);
    }
    for (i, &(addr, size)) in e820.iter().enumerate().take(MAX_E820) {
        p.e820_table[i].addr = addr;
        p.e820_table[i].size = size;
        p.e820_table[i].r#type = E820_RAM;
    }
    p.e820_entries = u8::try_from(e820.len().min(MAX_E820)).unwrap_or(0);
    mem.write_obj(p, GuestAddress(ZERO_PAGE))
        .map_err(|_| BootError::Write("boot_params"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e820_leaves_the_legacy_hole_and_the_mmio_gap() {
        assert_eq!(
            e820_map(128),
            vec![(0, LOW_RAM_END), (HIMEM, (128 << 20) - HIMEM)]
        );
        let big = e820_map(4096);
        assert_eq!(big.len(), 3);
        assert_eq!(big[2].0, 0x1_0000_0000);
    }
}
