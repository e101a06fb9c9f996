//! Active Directory encodings: objectGUID text form, unicodePwd values, FILETIME expiry,
//! userAccountControl flags.

/// Attributes whose values are bytes even when they happen to be valid UTF-8.
pub(crate) const BINARY_ATTRIBUTES: [&str; 3] =
    ["objectGUID", "mS-DS-ConsistencyGuid", "objectSid"];

/// userAccountControl: the account is disabled.
pub(crate) const ACCOUNT_DISABLE: u64 = 0x2;

/// The text form of an objectGUID (`{3F2504E0-4F89-11D3-9A0C-0305E82C3301}` without braces,
/// lower-case): the first three fields are little-endian in the binary value.
pub(crate) fn guid_to_string(b: &[u8]) -> Option<String> {
    let b: &[u8; 16] = b.try_into().ok()?;
    Some(format!(
        "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
        b[3],
        b[2],
        b[1],
        b[0],
        b[5],
        b[4],
        b[7],
        b[6],
        b[8],
        b[9],
        b[10],
        b[11],
        b[12],
        b[13],
        b[14],
        b[15]
    ))
}

/// The binary objectGUID of its text form.
pub(crate) fn guid_from_string(s: &str) -> Option<[u8; 16]> {
    let hex: String = s
        .trim_matches(|c| c == '{' || c == '}')
        .chars()
        .filter(|c| *c != '-')
        .collect();
    if hex.len() != 32 {
        return None;
    }
    let mut t = [0u8; 16];
    for (i, byte) in t.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some([
        t[3], t[2], t[1], t[0], t[5], t[4], t[7], t[6], t[8], t[9], t[10], t[11], t[12], t[13],
        t[14], t[15],
    ])
}

/// A unicodePwd value: the password in double quotes, UTF-16LE.
pub(crate) fn unicode_pwd(password: &str) -> Vec<u8> {
    format!("\"{password}\"")
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect()
}

/// accountExpires (100 ns ticks since 1601) as Unix seconds; never for 0 and i64::MAX.
pub(crate) fn filetime_to_unix(v: &str) -> Option<i64> {
    let ticks: i64 = v.trim().parse().ok()?;
    if ticks <= 0 || ticks == i64::MAX {
        return None;
    }
    Some(ticks / 10_000_000 - 11_644_473_600)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guids_round_trip_in_microsofts_byte_order() {
        // The GUID {3F2504E0-4F89-11D3-9A0C-0305E82C3301} as AD stores it.
        let raw = [
            0xe0, 0x04, 0x25, 0x3f, 0x89, 0x4f, 0xd3, 0x11, 0x9a, 0x0c, 0x03, 0x05, 0xe8, 0x2c,
            0x33, 0x01,
        ];
        let text = guid_to_string(&raw).unwrap();
        assert_eq!(text, "3f2504e0-4f89-11d3-9a0c-0305e82c3301");
        assert_eq!(guid_from_string(&text), Some(raw));
        assert_eq!(
            guid_from_string("{3F2504E0-4F89-11D3-9A0C-0305E82C3301}"),
            Some(raw)
        );
        assert_eq!(guid_from_string("not-a-guid"), None);
        assert_eq!(guid_to_string(&raw[..15]), None);
    }

    #[test]
    fn unicode_pwd_is_quoted_utf16le() {
        assert_eq!(unicode_pwd("ab"), b"\"\0a\0b\0\"\0".to_vec());
    }

    #[test]
    fn account_expiry() {
        assert_eq!(filetime_to_unix("0"), None);
        assert_eq!(filetime_to_unix("9223372036854775807"), None);
        // 2030-01-01T00:00:00Z
        assert_eq!(filetime_to_unix("135379296000000000"), Some(1_893_456_000));
    }
}
