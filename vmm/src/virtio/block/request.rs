//! One virtio-blk request: parse the chain the guest built, check it, run it against
//! the disk and write the status byte. Every length and offset here comes from the
//! guest and is checked before use.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use virtio_bindings::virtio_blk::{
    VIRTIO_BLK_ID_BYTES, VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_OK, VIRTIO_BLK_S_UNSUPP,
    VIRTIO_BLK_T_FLUSH, VIRTIO_BLK_T_GET_ID, VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT,
};
use virtio_queue::{DescriptorChain, Reader, Writer};
use vm_memory::GuestMemoryMmap;

/// Bytes per sector, as virtio-blk counts them.
pub const SECTOR: u64 = 512;
/// The bounce buffer between the file and guest memory.
pub const CHUNK: usize = 64 << 10;

/// What the request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Read sectors.
    In,
    /// Write sectors.
    Out,
    /// Flush.
    Flush,
    /// The disk's ID string.
    GetId,
    /// Anything else (answered UNSUPP).
    Other(u32),
}

/// A parsed request, borrowing guest memory.
pub struct Request<'a> {
    /// The operation.
    pub kind: Kind,
    /// The first sector.
    pub sector: u64,
    data_in: Reader<'a>,
    data_out: Writer<'a>,
    status: Writer<'a>,
}

/// Why a chain is no request at all (nothing can be answered: no status byte).
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// The chain's buffers are not in guest memory or overflow.
    #[error("descriptor chain: {0}")]
    Chain(#[from] virtio_queue::Error),
    /// The header is shorter than 16 bytes.
    #[error("request header shorter than 16 bytes")]
    ShortHeader,
    /// No writable byte for the status.
    #[error("no writable status byte")]
    NoStatus,
}

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Done {
    /// Bytes written into guest memory (the used length).
    pub used: u32,
    /// The status byte.
    pub status: u8,
    /// Data bytes moved (for metrics).
    pub bytes: u64,
}

impl<'a> Request<'a> {
    /// Parse `chain`.
    pub fn parse(
        chain: DescriptorChain<&'a GuestMemoryMmap>,
        mem: &'a GuestMemoryMmap,
    ) -> Result<Self, ParseError> {
        let mut data_in: Reader<'a> = Reader::new(mem, chain.clone())?;
        let mut data_out: Writer<'a> = Writer::new(mem, chain)?;
        let mut hdr = [0u8; 16];
        data_in
            .read_exact(&mut hdr)
            .map_err(|_| ParseError::ShortHeader)?;
        let avail = data_out.available_bytes();
        if avail == 0 {
            return Err(ParseError::NoStatus);
        }
        let status = data_out.split_at(avail - 1)?;
        let t = u32::from_le_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]);
        let mut s = [0u8; 8];
        s.copy_from_slice(&hdr[8..16]);
        let kind = match t {
            VIRTIO_BLK_T_IN => Kind::In,
            VIRTIO_BLK_T_OUT => Kind::Out,
            VIRTIO_BLK_T_FLUSH => Kind::Flush,
            VIRTIO_BLK_T_GET_ID => Kind::GetId,
            o => Kind::Other(o),
        };
        Ok(Self {
            kind,
            sector: u64::from_le_bytes(s),
            data_in,
            data_out,
            status,
        })
    }

    /// Data bytes the request moves (what the bytes/s limit charges).
    pub fn data_len(&self) -> u64 {
        match self.kind {
            Kind::In => self.data_out.available_bytes() as u64,
            Kind::Out => self.data_in.available_bytes() as u64,
            _ => 0,
        }
    }

    /// Run it against `disk` and write the status byte.
    pub fn execute(mut self, disk: &mut Disk) -> Done {
        let (status, written, bytes) = match self.run(disk) {
            Ok((w, b)) => (VIRTIO_BLK_S_OK as u8, w, b),
            Err(s) => (s, 0, 0),
        };
        // The status writer has exactly one byte; it was bounds-checked at parse.
        let _ = self.status.write_all(&[status]);
        Done {
            used: u32::try_from(written + 1).unwrap_or(u32::MAX),
            status,
            bytes,
        }
    }

    /// (bytes written to the guest, data bytes moved), or a status byte.
    fn run(&mut self, disk: &mut Disk) -> Result<(usize, u64), u8> {
        let ioerr = VIRTIO_BLK_S_IOERR as u8;
        match self.kind {
            Kind::In => {
                let len = self.data_out.available_bytes();
                let off = disk.range(self.sector, len as u64).ok_or(ioerr)?;
                let mut done = 0usize;
                while done < len {
                    let n = (len - done).min(CHUNK);
                    let buf = &mut disk.buf[..n];
                    disk.file
                        .read_exact_at(buf, off + done as u64)
                        .map_err(|_| ioerr)?;
                    self.data_out.write_all(buf).map_err(|_| ioerr)?;
                    done += n;
                }
                Ok((len, len as u64))
            }
            Kind::Out => {
                if disk.read_only {
                    return Err(ioerr);
                }
                let len = self.data_in.available_bytes();
                let off = disk.range(self.sector, len as u64).ok_or(ioerr)?;
                let mut done = 0usize;
                while done < len {
                    let n = (len - done).min(CHUNK);
                    let buf = &mut disk.buf[..n];
                    self.data_in.read_exact(buf).map_err(|_| ioerr)?;
                    disk.file
                        .write_all_at(buf, off + done as u64)
                        .map_err(|_| ioerr)?;
                    done += n;
                }
                Ok((0, len as u64))
            }
            Kind::Flush => {
                if !disk.read_only {
                    disk.file.sync_data().map_err(|_| ioerr)?;
                }
                Ok((0, 0))
            }
            Kind::GetId => {
                let n = self
                    .data_out
                    .available_bytes()
                    .min(VIRTIO_BLK_ID_BYTES as usize);
                let id = &disk.id[..n];
                self.data_out.write_all(id).map_err(|_| ioerr)?;
                Ok((n, 0))
            }
            Kind::Other(_) => Err(VIRTIO_BLK_S_UNSUPP as u8),
        }
    }
}

/// The backing file and what requests need to know of it.
pub struct Disk {
    /// The file or block device.
    pub file: File,
    /// Its size in bytes, a whole number of sectors.
    pub size: u64,
    /// Refuse writes.
    pub read_only: bool,
    /// The ID string, NUL-padded to 20 bytes.
    pub id: [u8; VIRTIO_BLK_ID_BYTES as usize],
    buf: Vec<u8>,
}

impl Disk {
    /// A disk over `file` of `size` bytes (rounded down to whole sectors).
    pub fn new(file: File, size: u64, read_only: bool, id: &str) -> Self {
        let mut idb = [0u8; VIRTIO_BLK_ID_BYTES as usize];
        for (d, s) in idb.iter_mut().zip(id.bytes()) {
            *d = s;
        }
        Self {
            file,
            size: size - size % SECTOR,
            read_only,
            id: idb,
            buf: vec![0; CHUNK],
        }
    }

    /// The byte offset of `sector` if `len` bytes from there fit on the disk and `len`
    /// is whole sectors.
    fn range(&self, sector: u64, len: u64) -> Option<u64> {
        if !len.is_multiple_of(SECTOR) {
            return None;
        }
        let off = sector.checked_mul(SECTOR)?;
        (off.checked_add(len)? <= self.size).then_some(off)
    }
}
