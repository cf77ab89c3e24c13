//! Just enough of the tar format for the engine's archive endpoints:
//! regular files in, one regular file out.
//!
//! The engine takes and gives files as tar streams (`docker cp`). We only
//! ever move one small file (a candidate nginx config, the journal image's
//! marker), so a hundred lines of ustar beat a dependency.

const BLOCK: usize = 512;

/// A tar archive holding one regular file `name` (no directories) with
/// `bytes` and mode `mode`, owned by root.
pub(crate) fn single_file(name: &str, bytes: &[u8], mode: u32) -> Result<Vec<u8>, String> {
    files(&[(name, bytes)], mode)
}

/// A tar archive holding regular files (bare names, no directories), each
/// with mode `mode`, owned by root.
pub(crate) fn files(entries: &[(&str, &[u8])], mode: u32) -> Result<Vec<u8>, String> {
    let mtime = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let size: usize = entries.iter().map(|(_, b)| BLOCK * 2 + b.len()).sum();
    let mut out = Vec::with_capacity(size + BLOCK * 2);
    for (name, bytes) in entries {
        if name.is_empty() || name.len() > 100 || name.contains('/') {
            return Err(format!(
                "cannot archive {name:?}: a bare file name of 1 to 100 bytes is needed"
            ));
        }
        let mut header = [0u8; BLOCK];
        header[..name.len()].copy_from_slice(name.as_bytes());
        octal(&mut header[100..108], u64::from(mode));
        octal(&mut header[108..116], 0);
        octal(&mut header[116..124], 0);
        octal(&mut header[124..136], bytes.len() as u64);
        octal(&mut header[136..148], mtime);
        header[156] = b'0';
        header[257..263].copy_from_slice(b"ustar\0");
        header[263..265].copy_from_slice(b"00");
        // The checksum is computed with its own field read as spaces.
        header[148..156].copy_from_slice(b"        ");
        let sum: u64 = header.iter().map(|&b| u64::from(b)).sum();
        let text = format!("{sum:06o}\0 ");
        header[148..156].copy_from_slice(text.as_bytes());
        out.extend_from_slice(&header);
        out.extend_from_slice(bytes);
        let pad = (BLOCK - bytes.len() % BLOCK) % BLOCK;
        out.resize(out.len() + pad, 0);
    }
    out.resize(out.len() + 2 * BLOCK, 0);
    Ok(out)
}

fn octal(field: &mut [u8], value: u64) {
    let width = field.len() - 1;
    let text = format!("{value:0width$o}");
    field[..width].copy_from_slice(&text.as_bytes()[text.len() - width..]);
    field[width] = 0;
}

/// The content of the first regular file in a tar archive.
pub(crate) fn first_file(archive: &[u8]) -> Result<Vec<u8>, String> {
    let mut at = 0;
    while at + BLOCK <= archive.len() {
        let header = &archive[at..at + BLOCK];
        if header.iter().all(|&b| b == 0) {
            break;
        }
        let size = parse_octal(&header[124..136])?;
        let kind = header[156];
        let start = at + BLOCK;
        let end = start + size as usize;
        if end > archive.len() {
            return Err("the archive is cut short".into());
        }
        if kind == b'0' || kind == 0 {
            return Ok(archive[start..end].to_vec());
        }
        if kind == b'1' || kind == b'2' {
            return Err("the path is a link, not a regular file".into());
        }
        at = start + size.div_ceil(BLOCK as u64) as usize * BLOCK;
    }
    Err("the archive holds no regular file".into())
}

fn parse_octal(field: &[u8]) -> Result<u64, String> {
    let text: String = field
        .iter()
        .take_while(|&&b| b != 0)
        .map(|&b| b as char)
        .collect();
    let text = text.trim();
    if text.is_empty() {
        return Ok(0);
    }
    u64::from_str_radix(text, 8).map_err(|_| format!("bad size field {text:?} in the archive"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_goes_in_and_comes_out() {
        let body = b"events {}\nhttp {}\n".repeat(100);
        let tar = single_file("nginx.conf", &body, 0o644).unwrap();
        assert_eq!(tar.len() % BLOCK, 0);
        assert_eq!(first_file(&tar).unwrap(), body);
    }

    #[test]
    fn checksum_matches_what_tar_expects() {
        let tar = single_file("a", b"x", 0o600).unwrap();
        let stored = parse_octal(&tar[148..154]).unwrap();
        let mut header = tar[..BLOCK].to_vec();
        header[148..156].copy_from_slice(b"        ");
        let sum: u64 = header.iter().map(|&b| u64::from(b)).sum();
        assert_eq!(stored, sum);
    }

    #[test]
    fn paths_and_empty_archives_are_refused() {
        assert!(single_file("etc/nginx.conf", b"", 0o644).is_err());
        assert!(first_file(&[0u8; 1024]).is_err());
    }

    #[test]
    fn directories_before_the_file_are_skipped() {
        let mut dir = [0u8; BLOCK];
        dir[..4].copy_from_slice(b"etc/");
        octal(&mut dir[124..136], 0);
        dir[156] = b'5';
        let mut tar = dir.to_vec();
        tar.extend(single_file("f", b"hello", 0o644).unwrap());
        assert_eq!(first_file(&tar).unwrap(), b"hello");
    }
}
