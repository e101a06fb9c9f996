//! Packets and attributes on the wire (RFC 2865 §3 and §5).

/// A packet's Code field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Code(pub u8);

impl Code {
    pub const ACCESS_REQUEST: Code = Code(1);
    pub const ACCESS_ACCEPT: Code = Code(2);
    pub const ACCESS_REJECT: Code = Code(3);
    pub const ACCOUNTING_REQUEST: Code = Code(4);
    pub const ACCOUNTING_RESPONSE: Code = Code(5);
    pub const ACCESS_CHALLENGE: Code = Code(11);
    pub const STATUS_SERVER: Code = Code(12);

    pub fn name(self) -> &'static str {
        match self.0 {
            1 => "Access-Request",
            2 => "Access-Accept",
            3 => "Access-Reject",
            4 => "Accounting-Request",
            5 => "Accounting-Response",
            11 => "Access-Challenge",
            12 => "Status-Server",
            13 => "Status-Client",
            _ => "Unknown",
        }
    }
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.name(), self.0)
    }
}

/// The smallest and largest packets RFC 2865 §3 allows.
pub const MIN_PACKET: usize = 20;
pub const MAX_PACKET: usize = 4096;
/// The longest attribute value (the length octet counts the two header octets).
pub const MAX_VALUE: usize = 253;

/// Standard attribute numbers the codec and the server use by number.
pub mod attr {
    pub const USER_NAME: u8 = 1;
    pub const USER_PASSWORD: u8 = 2;
    pub const CHAP_PASSWORD: u8 = 3;
    pub const NAS_IP_ADDRESS: u8 = 4;
    pub const FRAMED_IP_ADDRESS: u8 = 8;
    pub const REPLY_MESSAGE: u8 = 18;
    pub const STATE: u8 = 24;
    pub const CLASS: u8 = 25;
    pub const VENDOR_SPECIFIC: u8 = 26;
    pub const CALLED_STATION_ID: u8 = 30;
    pub const CALLING_STATION_ID: u8 = 31;
    pub const NAS_IDENTIFIER: u8 = 32;
    pub const PROXY_STATE: u8 = 33;
    pub const ACCT_STATUS_TYPE: u8 = 40;
    pub const ACCT_INPUT_OCTETS: u8 = 42;
    pub const ACCT_OUTPUT_OCTETS: u8 = 43;
    pub const ACCT_SESSION_ID: u8 = 44;
    pub const ACCT_SESSION_TIME: u8 = 46;
    pub const ACCT_TERMINATE_CAUSE: u8 = 49;
    pub const ACCT_INPUT_GIGAWORDS: u8 = 52;
    pub const ACCT_OUTPUT_GIGAWORDS: u8 = 53;
    pub const EAP_MESSAGE: u8 = 79;
    pub const MESSAGE_AUTHENTICATOR: u8 = 80;
    pub const NAS_IPV6_ADDRESS: u8 = 95;
}

/// A vendor's sub-attribute: its type and value.
pub type VendorPart<'a> = (u8, &'a [u8]);

/// One attribute as it travels: its type and raw value (a Vendor-Specific attribute keeps its
/// vendor id and sub-attributes inside `value`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attribute {
    pub typ: u8,
    pub value: Vec<u8>,
}

impl Attribute {
    pub fn new(typ: u8, value: impl Into<Vec<u8>>) -> Self {
        Attribute {
            typ,
            value: value.into(),
        }
    }

    /// A Vendor-Specific attribute (type 26) holding one sub-attribute in the format of
    /// RFC 2865 §5.26 (one octet type, one octet length).
    pub fn vendor(vendor: u32, vendor_type: u8, value: &[u8]) -> Result<Self, EncodeError> {
        if value.len() > MAX_VALUE - 6 {
            return Err(EncodeError::ValueTooLong(value.len()));
        }
        let mut v = Vec::with_capacity(6 + value.len());
        v.extend_from_slice(&vendor.to_be_bytes());
        v.push(vendor_type);
        // Bounded above: at most 253 - 6 + 2.
        v.push(u8::try_from(value.len() + 2).map_err(|_| EncodeError::ValueTooLong(value.len()))?);
        v.extend_from_slice(value);
        Ok(Attribute::new(26, v))
    }

    /// The sub-attributes of a Vendor-Specific attribute: (vendor id, [(type, value)]), or
    /// `None` when it is not one or its sub-attributes do not follow RFC 2865's suggested format.
    pub fn vendor_parts(&self) -> Option<(u32, Vec<VendorPart<'_>>)> {
        if self.typ != attr::VENDOR_SPECIFIC || self.value.len() < 4 {
            return None;
        }
        let vendor =
            u32::from_be_bytes([self.value[0], self.value[1], self.value[2], self.value[3]]);
        let mut rest = &self.value[4..];
        let mut subs = Vec::new();
        while !rest.is_empty() {
            if rest.len() < 2 {
                return None;
            }
            let len = rest[1] as usize;
            if len < 2 || len > rest.len() {
                return None;
            }
            subs.push((rest[0], &rest[2..len]));
            rest = &rest[len..];
        }
        Some((vendor, subs))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("packet shorter than the 20-octet header ({0} octets)")]
    TooShort(usize),
    #[error(
        "length field {claimed} is outside 20..=4096 or longer than the {received} octets received"
    )]
    BadLength { claimed: usize, received: usize },
    #[error("attribute at offset {0} has a bad length")]
    BadAttribute(usize),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("attribute value of {0} octets is longer than 253")]
    ValueTooLong(usize),
    #[error("packet of {0} octets is longer than 4096")]
    PacketTooLong(usize),
    #[error("password of {0} octets is longer than 128")]
    PasswordTooLong(usize),
}

/// A decoded packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet {
    pub code: Code,
    pub identifier: u8,
    pub authenticator: [u8; 16],
    pub attributes: Vec<Attribute>,
}

impl Packet {
    pub fn new(code: Code, identifier: u8, authenticator: [u8; 16]) -> Self {
        Packet {
            code,
            identifier,
            authenticator,
            attributes: Vec::new(),
        }
    }

    /// Decodes a packet. Octets after the Length field's end are padding and ignored
    /// (RFC 2865 §3); a Length longer than what arrived, or an attribute running past the end,
    /// is an error (the packet must be silently discarded).
    pub fn decode(buf: &[u8]) -> Result<Packet, DecodeError> {
        let len = Self::wire_length(buf)?;
        let mut attributes = Vec::new();
        let mut at = MIN_PACKET;
        while at < len {
            if at + 2 > len {
                return Err(DecodeError::BadAttribute(at));
            }
            let alen = buf[at + 1] as usize;
            if alen < 2 || at + alen > len {
                return Err(DecodeError::BadAttribute(at));
            }
            attributes.push(Attribute::new(buf[at], &buf[at + 2..at + alen]));
            at += alen;
        }
        let mut authenticator = [0u8; 16];
        authenticator.copy_from_slice(&buf[4..20]);
        Ok(Packet {
            code: Code(buf[0]),
            identifier: buf[1],
            authenticator,
            attributes,
        })
    }

    /// The packet's Length field, checked against what arrived.
    pub fn wire_length(buf: &[u8]) -> Result<usize, DecodeError> {
        if buf.len() < MIN_PACKET {
            return Err(DecodeError::TooShort(buf.len()));
        }
        let len = u16::from_be_bytes([buf[2], buf[3]]) as usize;
        if !(MIN_PACKET..=MAX_PACKET).contains(&len) || len > buf.len() {
            return Err(DecodeError::BadLength {
                claimed: len,
                received: buf.len(),
            });
        }
        Ok(len)
    }

    /// Encodes the packet as it is (authenticator and attributes unchanged).
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::with_capacity(64);
        out.push(self.code.0);
        out.push(self.identifier);
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&self.authenticator);
        for a in &self.attributes {
            if a.value.len() > MAX_VALUE {
                return Err(EncodeError::ValueTooLong(a.value.len()));
            }
            out.push(a.typ);
            out.push((a.value.len() + 2) as u8);
            out.extend_from_slice(&a.value);
        }
        if out.len() > MAX_PACKET {
            return Err(EncodeError::PacketTooLong(out.len()));
        }
        let len = (out.len() as u16).to_be_bytes();
        out[2] = len[0];
        out[3] = len[1];
        Ok(out)
    }

    /// The first value of a standard attribute.
    pub fn get(&self, typ: u8) -> Option<&[u8]> {
        self.attributes
            .iter()
            .find(|a| a.typ == typ)
            .map(|a| a.value.as_slice())
    }

    /// Every value of a standard attribute, in order.
    pub fn get_all(&self, typ: u8) -> impl Iterator<Item = &[u8]> {
        self.attributes
            .iter()
            .filter(move |a| a.typ == typ)
            .map(|a| a.value.as_slice())
    }

    /// The first value of a vendor's sub-attribute.
    pub fn get_vendor(&self, vendor: u32, vendor_type: u8) -> Option<&[u8]> {
        self.attributes.iter().find_map(|a| {
            let (v, subs) = a.vendor_parts()?;
            if v != vendor {
                return None;
            }
            subs.into_iter()
                .find(|(t, _)| *t == vendor_type)
                .map(|(_, val)| val)
        })
    }

    /// A text attribute, with invalid UTF-8 replaced.
    pub fn text(&self, typ: u8) -> Option<String> {
        self.get(typ)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }

    /// A 32-bit integer attribute.
    pub fn integer(&self, typ: u8) -> Option<u32> {
        let v = self.get(typ)?;
        <[u8; 4]>::try_from(v).ok().map(u32::from_be_bytes)
    }

    /// An IPv4 address attribute.
    pub fn ipv4(&self, typ: u8) -> Option<std::net::Ipv4Addr> {
        let v = self.get(typ)?;
        <[u8; 4]>::try_from(v).ok().map(std::net::Ipv4Addr::from)
    }

    pub fn push(&mut self, typ: u8, value: impl Into<Vec<u8>>) -> &mut Self {
        self.attributes.push(Attribute::new(typ, value));
        self
    }

    /// How many times a standard attribute occurs.
    pub fn count(&self, typ: u8) -> usize {
        self.attributes.iter().filter(|a| a.typ == typ).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(code: u8, id: u8, len: u16) -> Vec<u8> {
        let mut v = vec![code, id];
        v.extend_from_slice(&len.to_be_bytes());
        v.extend_from_slice(&[7u8; 16]);
        v
    }

    #[test]
    fn decodes_and_ignores_padding_beyond_length() {
        let mut buf = header(1, 9, 26);
        buf.extend_from_slice(&[1, 6, b'b', b'o', b'b', b'!']);
        buf.extend_from_slice(&[0xff; 10]);
        let p = Packet::decode(&buf).unwrap();
        assert_eq!(p.code, Code::ACCESS_REQUEST);
        assert_eq!(p.identifier, 9);
        assert_eq!(p.text(attr::USER_NAME).as_deref(), Some("bob!"));
        assert_eq!(p.encode().unwrap(), buf[..26]);
    }

    #[test]
    fn rejects_bad_lengths() {
        assert_eq!(Packet::decode(&[1, 2, 3]), Err(DecodeError::TooShort(3)));
        assert!(matches!(
            Packet::decode(&header(1, 1, 40)),
            Err(DecodeError::BadLength { .. })
        ));
        assert!(matches!(
            Packet::decode(&header(1, 1, 19)),
            Err(DecodeError::BadLength { .. })
        ));
        let mut zero_len_attr = header(1, 1, 22);
        zero_len_attr.extend_from_slice(&[1, 0]);
        assert_eq!(
            Packet::decode(&zero_len_attr),
            Err(DecodeError::BadAttribute(20))
        );
        let mut overrun = header(1, 1, 23);
        overrun.extend_from_slice(&[1, 9, 0]);
        assert_eq!(Packet::decode(&overrun), Err(DecodeError::BadAttribute(20)));
        let mut half = header(1, 1, 21);
        half.push(1);
        assert_eq!(Packet::decode(&half), Err(DecodeError::BadAttribute(20)));
    }

    #[test]
    fn vendor_specific_round_trip() {
        let a = Attribute::vendor(12356, 1, b"Admins").unwrap();
        let (vendor, subs) = a.vendor_parts().unwrap();
        assert_eq!(vendor, 12356);
        assert_eq!(subs, vec![(1u8, &b"Admins"[..])]);
        let mut p = Packet::new(Code::ACCESS_ACCEPT, 1, [0; 16]);
        p.attributes.push(a);
        assert_eq!(p.get_vendor(12356, 1), Some(&b"Admins"[..]));
        assert_eq!(p.get_vendor(9, 1), None);
    }

    #[test]
    fn refuses_oversized_values() {
        let mut p = Packet::new(Code::ACCESS_ACCEPT, 1, [0; 16]);
        p.push(18, vec![b'x'; 254]);
        assert_eq!(p.encode(), Err(EncodeError::ValueTooLong(254)));
        assert!(Attribute::vendor(1, 1, &[0; 248]).is_err());
    }
}
