//! Guest memory: anonymous mappings registered with KVM, split around the 32-bit MMIO hole.

use crate::x86::layout::{MMIO_GAP_END, MMIO_GAP_START};
use kvm_bindings::kvm_userspace_memory_region;
use kvm_ioctls::VmFd;
use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

/// Errors while creating guest memory.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    /// mmap of guest memory failed.
    #[error("cannot map {mib} MiB of guest memory; lower the memory size or free host memory")]
    Map {
        /// Size asked for.
        mib: u64,
        /// Why.
        #[source]
        source: vm_memory::mmap::FromRangesError,
    },
    /// KVM refused a memory slot.
    #[error("KVM refused guest memory slot {slot} at {gpa:#x} ({size:#x} bytes)")]
    Slot {
        /// Slot number.
        slot: u32,
        /// Guest-physical start.
        gpa: u64,
        /// Size in bytes.
        size: u64,
        /// Why.
        #[source]
        source: kvm_ioctls::Error,
    },
}

/// The (start, size) ranges of RAM for `mib` MiB of guest memory.
pub fn ram_ranges(mib: u64) -> Vec<(u64, u64)> {
    let size = mib.saturating_mul(1 << 20);
    if size <= MMIO_GAP_START {
        vec![(0, size)]
    } else {
        vec![(0, MMIO_GAP_START), (MMIO_GAP_END, size - MMIO_GAP_START)]
    }
}

/// Map guest memory (not yet registered with KVM).
pub fn create(mib: u64) -> Result<GuestMemoryMmap, MemoryError> {
    let ranges: Vec<(GuestAddress, usize)> = ram_ranges(mib)
        .into_iter()
        .map(|(s, l)| (GuestAddress(s), usize::try_from(l).unwrap_or(usize::MAX)))
        .collect();
    GuestMemoryMmap::from_ranges(&ranges).map_err(|e| MemoryError::Map { mib, source: e })
}

/// Register every region of `mem` with the VM.
pub fn register(vm: &VmFd, mem: &GuestMemoryMmap) -> Result<(), MemoryError> {
    for (slot, region) in (0u32..).zip(mem.iter()) {
        let gpa = region.start_addr().0;
        let size = region.len();
        let host = region
            .get_host_address(vm_memory::MemoryRegionAddress(0))
            .map_err(|_| MemoryError::Slot {
                slot,
                gpa,
                size,
                source: kvm_ioctls::Error::new(libc::EFAULT),
            })?;
        let r = kvm_userspace_memory_region {
            slot,
            guest_phys_addr: gpa,
            memory_size: size,
            userspace_addr: host as u64,
            flags: 0,
        };
        // SAFETY: the region is a live mapping owned by `mem`, which the VM keeps for as
        // long as the VM fd exists (both live in `Vm` and are dropped together).
        unsafe { vm.set_user_memory_region(r) }.map_err(|e| MemoryError::Slot {
            slot,
            gpa,
            size,
            source: e,
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_above_the_hole_is_split() {
        assert_eq!(ram_ranges(128), vec![(0, 128 << 20)]);
        assert_eq!(
            ram_ranges(4096),
            vec![(0, 0xc000_0000), (0x1_0000_0000, 0x4000_0000)]
        );
    }
}
