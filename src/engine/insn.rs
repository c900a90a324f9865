//! Finding a syscall instruction that already exists in the target, so nothing is ever written
//! to its memory: the vDSO first (every process has one, and it is never unmapped under a
//! running program), then any other executable mapping.

use super::procfs::{self, Mapping};
use super::EngineError;
use fdclose_arch::AbiKind;
use std::os::unix::fs::FileExt;

/// Where we found the instruction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Insn {
    pub addr: u64,
    /// The mapping's name ("[vdso]", a library path).
    pub mapping: String,
}

/// First offset `i` in `bytes` where `pat` starts and `base + i` is `align`-aligned.
pub fn find_pattern(bytes: &[u8], base: u64, pat: &[u8], align: usize) -> Option<usize> {
    if bytes.len() < pat.len() {
        return None;
    }
    (0..=bytes.len() - pat.len())
        .filter(|i| (base + *i as u64).is_multiple_of(align as u64))
        .find(|&i| &bytes[i..i + pat.len()] == pat)
}

/// The instruction inside an ELF image mapped at `base` (the vDSO), looking only in its
/// executable PT_LOAD segments. Falls back to the whole image if it does not parse.
pub fn find_in_elf(image: &[u8], base: u64, pat: &[u8], align: usize) -> Option<u64> {
    match goblin::elf::Elf::parse(image) {
        Ok(elf) => elf
            .program_headers
            .iter()
            .filter(|ph| ph.p_type == goblin::elf::program_header::PT_LOAD && ph.is_executable())
            .find_map(|ph| {
                let start = ph.p_offset as usize;
                let end = (start + ph.p_filesz as usize).min(image.len());
                let seg = image.get(start..end)?;
                let at = base + ph.p_vaddr;
                find_pattern(seg, at, pat, align).map(|i| at + i as u64)
            }),
        Err(_) => find_pattern(image, base, pat, align).map(|i| base + i as u64),
    }
}

/// Find the syscall instruction of `abi` in process `pid` (which we have stopped and may read).
pub fn find(pid: i32, tid: i32, abi: AbiKind) -> Result<Insn, EngineError> {
    find_in(pid, tid, abi, true)
}

/// [`find`], optionally without looking at the vDSO (to test the other path).
/// Reads go through thread `tid` (/proc/PID/maps is empty once the leader has exited).
fn find_in(pid: i32, tid: i32, abi: AbiKind, vdso_first: bool) -> Result<Insn, EngineError> {
    let maps = procfs::parse_maps(&procfs::read_proc(pid, &format!("task/{tid}/maps"))?);
    let path = format!("/proc/{pid}/task/{tid}/mem");
    let mem = std::fs::File::open(&path).map_err(|source| EngineError::Proc {
        pid,
        path: path.clone(),
        source,
    })?;
    let pat = abi.syscall_insn();
    let align = abi.insn_align();
    let read = |m: &Mapping, off: u64, len: usize| -> Option<Vec<u8>> {
        let mut buf = vec![0u8; len];
        let n = mem.read_at(&mut buf, m.start + off).ok()?;
        buf.truncate(n);
        Some(buf)
    };

    if let Some(vdso) = maps.iter().find(|m| vdso_first && m.path == "[vdso]") {
        let len = (vdso.end - vdso.start) as usize;
        if let Some(image) = read(vdso, 0, len) {
            if let Some(addr) = find_in_elf(&image, vdso.start, pat, align) {
                return Ok(Insn {
                    addr,
                    mapping: vdso.path.clone(),
                });
            }
        }
    }
    // Then the program's other code (the C library has plenty). [vsyscall] is execute-only.
    const CHUNK: u64 = 1 << 20;
    for m in maps
        .iter()
        .filter(|m| m.executable() && m.readable() && m.path != "[vsyscall]" && m.path != "[vdso]")
    {
        let mut off = 0u64;
        while m.start + off < m.end {
            let len = CHUNK.min(m.end - m.start - off) as usize;
            let Some(buf) = read(m, off, len) else {
                break;
            };
            if let Some(i) = find_pattern(&buf, m.start + off, pat, align) {
                return Ok(Insn {
                    addr: m.start + off + i as u64,
                    mapping: if m.path.is_empty() {
                        "anonymous code".into()
                    } else {
                        m.path.clone()
                    },
                });
            }
            if buf.len() < len {
                break;
            }
            // Overlap by one instruction so a pattern across the chunk edge is not missed.
            off += CHUNK - pat.len() as u64;
        }
    }
    Err(EngineError::NoSyscallInsn {
        pid,
        insn: format!("{abi} {:02x?}", pat),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_respects_alignment() {
        let svc = [0x01, 0x00, 0x00, 0xd4];
        let mut b = vec![0u8; 2];
        b.extend_from_slice(&svc); // at offset 2: misaligned for base 0x1000
        b.extend_from_slice(&[0, 0]);
        b.extend_from_slice(&svc); // at offset 8: aligned
        assert_eq!(find_pattern(&b, 0x1000, &svc, 4), Some(8));
        assert_eq!(find_pattern(&b, 0x1000, &svc, 1), Some(2));
        assert_eq!(find_pattern(&b, 0x1002, &svc, 4), Some(2));
        assert_eq!(find_pattern(&[0x0f], 0, &[0x0f, 0x05], 1), None);
    }

    /// Both paths of `find` on our own process: the vDSO, and without it the program's other
    /// code (the C library); each address really holds the instruction.
    #[test]
    fn finds_the_instruction_in_a_live_process() {
        let abi = <fdclose_arch::Native as fdclose_arch::Abi>::KIND;
        let me = std::process::id() as i32;
        let mem = std::fs::File::open("/proc/self/mem").unwrap();
        for vdso_first in [true, false] {
            let insn = find_in(me, me, abi, vdso_first).unwrap();
            assert_eq!(insn.mapping == "[vdso]", vdso_first, "{insn:?}");
            let mut b = vec![0u8; abi.syscall_insn().len()];
            mem.read_exact_at(&mut b, insn.addr).unwrap();
            assert_eq!(b, abi.syscall_insn());
            assert_eq!(insn.addr % abi.insn_align() as u64, 0);
        }
    }

    /// Our own vDSO, read from our memory, holds the native syscall instruction in its code.
    #[test]
    fn own_vdso_has_a_syscall_instruction() {
        let maps = procfs::parse_maps(&std::fs::read_to_string("/proc/self/maps").unwrap());
        let vdso = maps.iter().find(|m| m.path == "[vdso]").expect("a vDSO");
        let mem = std::fs::File::open("/proc/self/mem").unwrap();
        let mut image = vec![0u8; (vdso.end - vdso.start) as usize];
        mem.read_exact_at(&mut image, vdso.start).unwrap();
        let abi = <fdclose_arch::Native as fdclose_arch::Abi>::KIND;
        let addr = find_in_elf(&image, vdso.start, abi.syscall_insn(), abi.insn_align())
            .expect("syscall instruction in the vDSO");
        let off = (addr - vdso.start) as usize;
        assert_eq!(
            &image[off..off + abi.syscall_insn().len()],
            abi.syscall_insn()
        );
    }
}
