//! Builds valid FIX messages (BodyLength and CheckSum computed), for the simulator and tests.

use super::framer::checksum;
use super::SOH;

/// Makes an encoded message's CheckSum (10) wrong by changing its last digit: a line error
/// the framer refuses, the rest of the message left as it was.
pub fn break_checksum(message: &mut [u8]) {
    if let Some(last_digit) = message
        .len()
        .checked_sub(2)
        .and_then(|i| message.get_mut(i))
    {
        *last_digit = if *last_digit == b'0' { b'1' } else { b'0' };
    }
}

#[derive(Debug, Clone)]
pub struct FixEncoder {
    begin_string: String,
}

impl FixEncoder {
    pub fn new(begin_string: &str) -> FixEncoder {
        FixEncoder {
            begin_string: begin_string.to_owned(),
        }
    }

    /// Encodes `35=msg_type` followed by `fields` in order.
    pub fn message(&self, msg_type: &str, fields: &[(u32, &str)]) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        self.write(&mut out, msg_type, fields);
        out
    }

    /// Appends one encoded message to `out`.
    pub fn write(&self, out: &mut Vec<u8>, msg_type: &str, fields: &[(u32, &str)]) {
        use std::io::Write;
        let mut body = Vec::with_capacity(200);
        let _ = write!(body, "35={msg_type}\x01");
        for (tag, value) in fields {
            let _ = write!(body, "{tag}={value}\x01");
        }
        let start = out.len();
        let _ = write!(out, "8={}\x019={}\x01", self.begin_string, body.len());
        out.extend_from_slice(&body);
        let sum = checksum(&out[start..]);
        let _ = write!(out, "10={sum:03}");
        out.push(SOH);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_a_published_logon() {
        // Line 4 of the public samples: a FIX.4.2 Logon with BodyLength 65 and CheckSum 062.
        let logon = FixEncoder::new("FIX.4.2").message(
            "A",
            &[
                (49, "SERVER"),
                (56, "CLIENT"),
                (34, "177"),
                (52, "20090107-18:15:16"),
                (98, "0"),
                (108, "30"),
            ],
        );
        let expected = b"8=FIX.4.2\x019=65\x0135=A\x0149=SERVER\x0156=CLIENT\x0134=177\x0152=20090107-18:15:16\x0198=0\x01108=30\x0110=062\x01";
        assert_eq!(logon, expected.to_vec());
    }
}
