//! File permission modes as written in the config ("0750").

use std::fmt;

/// Permission bits of a file (the low 12 bits of `st_mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Mode(u32);

impl Mode {
    pub const MASK: u32 = 0o7777;

    /// Keeps only the permission bits of a raw `st_mode`.
    pub fn from_st_mode(st_mode: u32) -> Mode {
        Mode(st_mode & Self::MASK)
    }

    pub fn bits(self) -> u32 {
        self.0
    }

    /// Parses a mode written as 3 or 4 octal digits, e.g. "750" or "0750".
    pub fn parse(text: &str) -> Result<Mode, String> {
        let ok = (3..=4).contains(&text.len()) && text.bytes().all(|b| (b'0'..=b'7').contains(&b));
        if !ok {
            return Err(format!(
                "{text:?} is not a mode: write 3 or 4 octal digits, like \"0750\""
            ));
        }
        u32::from_str_radix(text, 8)
            .map(Mode)
            .map_err(|e| format!("{text:?} is not a mode: {e}"))
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04o}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_octal_modes() {
        assert_eq!(Mode::parse("0750").unwrap().bits(), 0o750);
        assert_eq!(Mode::parse("755").unwrap().bits(), 0o755);
        assert_eq!(Mode::parse("1777").unwrap().to_string(), "1777");
        for bad in ["", "75", "0758", "07500", "rwx", "+750", "0x1ed"] {
            assert!(Mode::parse(bad).is_err(), "{bad} accepted");
        }
    }
}
