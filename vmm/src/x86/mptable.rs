//! The Intel MultiProcessor table: how a guest without ACPI finds its CPUs, the I/O APIC
//! and how ISA interrupts are wired.

use super::layout::{IOAPIC, LAPIC, MPTABLE, MP_FLOATING};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// Errors while writing the MP table.
#[derive(Debug, thiserror::Error)]
pub enum MpTableError {
    /// More CPUs than the table has room for.
    #[error("MP table: {0} CPUs do not fit (at most 64)")]
    TooManyCpus(u32),
    /// Guest memory too small to hold it.
    #[error("MP table: cannot write it at {0:#x}; give the guest more memory")]
    Write(u64),
}

const ISA_IRQS: u8 = 16;

fn checksum(b: &[u8]) -> u8 {
    0u8.wrapping_sub(b.iter().fold(0u8, |a, x| a.wrapping_add(*x)))
}

/// Build the configuration table for `cpus` processors (bytes, checksummed).
pub fn build_table(cpus: u32) -> Result<Vec<u8>, MpTableError> {
    if cpus == 0 || cpus > 64 {
        return Err(MpTableError::TooManyCpus(cpus));
    }
    let ioapic_id = u8::try_from(cpus).unwrap_or(64); // the id after the last LAPIC
    let mut entries = Vec::new();
    let mut count: u16 = 0;
    for id in 0..cpus {
        let flags = if id == 0 { 0x3 } else { 0x1 }; // enabled, BSP
        entries.push(0u8); // processor
        entries.push(u8::try_from(id).unwrap_or(0));
        entries.push(0x14); // LAPIC version
        entries.push(flags);
        entries.extend_from_slice(&0x600u32.to_le_bytes()); // family 6
        entries.extend_from_slice(&0x201u32.to_le_bytes()); // FPU, APIC
        entries.extend_from_slice(&[0; 8]);
        count += 1;
    }
    entries.extend_from_slice(&[1, 0]); // bus 0
    entries.extend_from_slice(b"ISA   ");
    count += 1;
    entries.extend_from_slice(&[2, ioapic_id, 0x11, 1]); // I/O APIC, enabled
    entries.extend_from_slice(&u32::try_from(IOAPIC).unwrap_or(0).to_le_bytes());
    count += 1;
    for irq in 0..ISA_IRQS {
        // INT, conforming polarity/trigger, from ISA bus irq to I/O APIC pin irq.
        entries.extend_from_slice(&[3, 0, 0, 0, 0, irq, ioapic_id, irq]);
        count += 1;
    }
    // ExtINT on LINT0 and NMI on LINT1 of every LAPIC.
    entries.extend_from_slice(&[4, 3, 0, 0, 0, 0, 0xff, 0]);
    entries.extend_from_slice(&[4, 1, 0, 0, 0, 0, 0xff, 1]);
    count += 2;

    let len = u16::try_from(44 + entries.len()).unwrap_or(u16::MAX);
    let mut t = Vec::with_capacity(usize::from(len));
    t.extend_from_slice(b"PCMP");
    t.extend_from_slice(&len.to_le_bytes());
    t.push(4); // spec 1.4
    t.push(0); // checksum, below
    t.extend_from_slice(b"ROOST   ");
    t.extend_from_slice(b"MICROVM     ");
    t.extend_from_slice(&0u32.to_le_bytes()); // OEM table
    t.extend_from_slice(&0u16.to_le_bytes());
    t.extend_from_slice(&count.to_le_bytes());
    t.extend_from_slice(&u32::try_from(LAPIC).unwrap_or(0).to_le_bytes());
    t.extend_from_slice(&[0, 0, 0, 0]); // extended table length, checksum, reserved
    t.extend_from_slice(&entries);
    t[7] = checksum(&t);
    Ok(t)
}

/// Write the floating pointer and configuration table for `cpus` processors.
pub fn write(mem: &GuestMemoryMmap, cpus: u32) -> Result<(), MpTableError> {
    let table = build_table(cpus)?;
    let mut fp = Vec::with_capacity(16);
    fp.extend_from_slice(b"_MP_");
    fp.extend_from_slice(&u32::try_from(MPTABLE).unwrap_or(0).to_le_bytes());
    fp.extend_from_slice(&[1, 4, 0, 0, 0, 0, 0, 0]); // length 16 bytes, spec 1.4
    fp[10] = checksum(&fp);
    mem.write_slice(&table, GuestAddress(MPTABLE))
        .map_err(|_| MpTableError::Write(MPTABLE))?;
    mem.write_slice(&fp, GuestAddress(MP_FLOATING))
        .map_err(|_| MpTableError::Write(MP_FLOATING))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_checksum_to_zero_and_fit_below_the_floating_pointer() {
        for n in [1, 4, 64] {
            let t = build_table(n).unwrap();
            assert_eq!(t.iter().fold(0u8, |a, x| a.wrapping_add(*x)), 0);
            assert!(MPTABLE + t.len() as u64 <= MP_FLOATING);
            let count = u16::from_le_bytes([t[34], t[35]]);
            assert_eq!(u32::from(count), n + 1 + 1 + 16 + 2);
        }
        assert!(build_table(65).is_err());
    }
}
