//! Reading a timestamped trace back as GitLab's log viewer shows it: prefixes removed, `+` continuations joined.

/// `YYYY-MM-DDTHH:MM:SS.uuuuuuZ ` followed by `<2 hex><O|E><' '|'+'>`.
const PREFIX_LEN: usize = 32;

fn prefix_kind(line: &[u8]) -> Option<u8> {
    let p = line.get(..PREFIX_LEN)?;
    let digits = [
        0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18, 20, 21, 22, 23, 24, 25,
    ];
    let shape = digits.iter().all(|i| p[*i].is_ascii_digit())
        && p[4] == b'-'
        && p[7] == b'-'
        && p[10] == b'T'
        && p[13] == b':'
        && p[16] == b':'
        && p[19] == b'.'
        && p[26] == b'Z'
        && p[27] == b' '
        && p[28].is_ascii_hexdigit()
        && p[29].is_ascii_hexdigit()
        && matches!(p[30], b'O' | b'E')
        && matches!(p[31], b' ' | b'+');
    shape.then_some(p[31])
}

/// The log without `FF_TIMESTAMPS` prefixes; a `+` line continues the previous one (the newline the timestamper
/// added before it is dropped). Lines without a prefix are kept as they are.
pub fn strip_timestamps(log: &str) -> String {
    let mut out = String::with_capacity(log.len());
    for line in log.split_inclusive('\n') {
        match prefix_kind(line.as_bytes()) {
            Some(b'+') => {
                if out.ends_with('\n') {
                    out.pop();
                }
                out.push_str(&line[PREFIX_LEN..]);
            }
            Some(_) => out.push_str(&line[PREFIX_LEN..]),
            None => out.push_str(line),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_continuations_and_keeps_plain_lines() {
        let log = "2026-01-02T03:04:05.123456Z 00O section_start:1:x\r\x1b[0K\n\
                   2026-01-02T03:04:05.123457Z 00O+header\n\
                   2026-01-02T03:04:05.123458Z 01O out\n\
                   plain\n";
        assert_eq!(
            strip_timestamps(log),
            "section_start:1:x\r\x1b[0Kheader\nout\nplain\n"
        );
    }
}
