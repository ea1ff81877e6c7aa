//! TSIG (RFC 8945) on DNS messages: signed requests checked, replies signed.
//!
//! Takes a request's bytes and the keyring; produces either the key that
//! signed it, with a [`ReplySigner`] that signs every reply message
//! (the first with the request's MAC, later ones of a multi-message
//! transfer chained to the one before, RFC 8945 §5.3.1), or the error
//! reply RFC 8945 §5.2 asks for (NOTAUTH with BADKEY or BADSIG unsigned,
//! BADTIME signed). The MACs themselves are hickory-proto's (`TSigner`);
//! this module adds what hickory leaves to a server: the key lookup, the
//! time check, chaining, and appending the TSIG record to encoded bytes.
//!
//! It never decides what a key may do (the callers do: transfers, and
//! UPDATE later) and never logs a secret.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use hickory_proto::op::{Header, Message, MessageType, Metadata, ResponseCode};
use hickory_proto::rr::rdata::tsig::{TSIG, TsigError, make_tsig_record};
use hickory_proto::rr::{Name, TSigner};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder};
use thiserror::Error;

use crate::keys::{Key, Keyring};

/// Why a signed request was not accepted.
#[derive(Debug, Error)]
pub enum Refusal {
    /// The key named in the request is not in the keyring (or uses
    /// another algorithm).
    #[error("key {0} is not known here (BADKEY)")]
    UnknownKey(Name),
    /// The MAC does not verify with the key.
    #[error("the signature by key {0} does not verify (BADSIG)")]
    BadSignature(Arc<str>),
    /// The signing time is too far from ours.
    #[error("the signature by key {key} was made at {signed}, {skew} s from our clock (BADTIME)")]
    BadTime {
        /// The key.
        key: Arc<str>,
        /// When the request says it was signed (Unix seconds).
        signed: u64,
        /// How far that is from now, in seconds.
        skew: u64,
    },
}

/// How a request stands with TSIG.
pub enum Verdict {
    /// No TSIG record.
    Unsigned,
    /// Signed with this key; replies are to be signed with `signer`.
    Signed {
        /// The key that signed it.
        key: Arc<Key>,
        /// Signs the replies.
        signer: ReplySigner,
    },
    /// Signed, but not acceptably: answer with `reply` (already complete).
    Refused {
        /// Why.
        refusal: Refusal,
        /// The error reply RFC 8945 §5.2 asks for.
        reply: Vec<u8>,
    },
}

/// Checks the TSIG record of `request` (already decoded from `bytes`)
/// against `keyring` at `now` (Unix seconds).
pub fn verify(bytes: &[u8], request: &Message, keyring: &Keyring, now: u64) -> Verdict {
    let Some(tsig) = request.signature.as_deref() else {
        return Verdict::Unsigned;
    };
    let key_name = tsig.name.to_ascii();
    let key_name = key_name.strip_suffix('.').unwrap_or(&key_name);
    let key = keyring
        .get(key_name)
        .filter(|key| key.algorithm().tsig() == tsig.data.algorithm);
    let Some(key) = key else {
        let refusal = Refusal::UnknownKey(tsig.name.clone());
        let reply = error_reply(request, now, None, tsig.name.clone(), TsigError::BadKey);
        return Verdict::Refused { refusal, reply };
    };
    let signer = key.tsig().clone();
    let Ok((mac, signed, range)) = signer.verify_message_byte(bytes, None, true) else {
        let refusal = Refusal::BadSignature(key.name().clone());
        let reply = error_reply(
            request,
            now,
            Some(&signer),
            signer.signer_name().clone(),
            TsigError::BadSig,
        );
        return Verdict::Refused { refusal, reply };
    };
    if !range.contains(&now) && range.end != now {
        let refusal = Refusal::BadTime {
            key: key.name().clone(),
            signed,
            skew: now.abs_diff(signed),
        };
        // BADTIME replies are signed (RFC 8945 §5.2.3) and carry our time.
        let mut reply = bare_reply(request, ResponseCode::NotAuth);
        let mut signer = ReplySigner::new(signer, mac, request.metadata.id);
        signer.error = Some(TsigError::BadTime);
        if signer.sign(&mut reply, now).is_err() {
            reply = bare_reply(request, ResponseCode::NotAuth);
        }
        return Verdict::Refused { refusal, reply };
    }
    Verdict::Signed {
        key: key.clone(),
        signer: ReplySigner::new(signer, mac, request.metadata.id),
    }
}

/// Signs the replies to one signed request, in order.
pub struct ReplySigner {
    signer: TSigner,
    /// The request's MAC before the first reply; then the last reply's.
    prior_mac: Vec<u8>,
    /// The request's ID (TSIG's original ID).
    request_id: u16,
    /// True once the first reply is signed: later ones are chained.
    chained: bool,
    /// The TSIG error to report (BADTIME), if any.
    error: Option<TsigError>,
}

impl ReplySigner {
    fn new(signer: TSigner, request_mac: Vec<u8>, request_id: u16) -> Self {
        ReplySigner {
            signer,
            prior_mac: request_mac,
            request_id,
            chained: false,
            error: None,
        }
    }

    /// Appends a TSIG record signing `reply` (an encoded message without
    /// one) at `now`: the first reply's MAC covers the request's MAC and
    /// every TSIG variable; each later one covers the previous reply's
    /// MAC and only the timers (RFC 8945 §5.3.1).
    ///
    /// # Errors
    /// When `reply` is not a whole DNS message or the record cannot be
    /// encoded.
    pub fn sign(&mut self, reply: &mut Vec<u8>, now: u64) -> Result<(), SignError> {
        let stub = TSIG::new(
            self.signer.algorithm().clone(),
            now,
            self.signer.fudge(),
            Vec::new(),
            self.request_id,
            self.error,
            Vec::new(),
        );
        let mut tbs = Vec::with_capacity(reply.len() + self.prior_mac.len() + 128);
        {
            let mut encoder = BinEncoder::new(&mut tbs);
            let mac_len = u16::try_from(self.prior_mac.len()).map_err(|_| SignError)?;
            encoder.emit_u16(mac_len).map_err(|_| SignError)?;
            encoder.emit_vec(&self.prior_mac).map_err(|_| SignError)?;
            encoder.emit_vec(reply).map_err(|_| SignError)?;
            if self.chained {
                encoder
                    .emit_u16(u16::try_from(now >> 32).unwrap_or(0))
                    .map_err(|_| SignError)?;
                encoder
                    .emit_u32(u32::try_from(now & 0xffff_ffff).unwrap_or(0))
                    .map_err(|_| SignError)?;
                encoder.emit_u16(stub.fudge).map_err(|_| SignError)?;
            } else {
                stub.emit_tsig_for_mac(&mut encoder, self.signer.signer_name())
                    .map_err(|_| SignError)?;
            }
        }
        let mac = self.signer.sign(&tbs).map_err(|_| SignError)?;
        append_tsig(
            reply,
            self.signer.signer_name().clone(),
            stub.set_mac(mac.clone()),
        )?;
        self.prior_mac = mac;
        self.chained = true;
        Ok(())
    }
}

/// A reply could not be signed (it was not a whole message).
#[derive(Debug, Error)]
#[error("the reply could not be signed")]
pub struct SignError;

/// Appends `tsig` as the last additional record of the encoded `message`.
fn append_tsig(message: &mut Vec<u8>, name: Name, tsig: TSIG) -> Result<(), SignError> {
    if message.len() < 12 {
        return Err(SignError);
    }
    let arcount = u16::from_be_bytes([message[10], message[11]])
        .checked_add(1)
        .ok_or(SignError)?;
    // A fresh encoder: TSIG's names are never compressed (RFC 8945 §4.2).
    let mut record = Vec::with_capacity(128);
    make_tsig_record(name, tsig)
        .emit(&mut BinEncoder::new(&mut record))
        .map_err(|_| SignError)?;
    message.extend_from_slice(&record);
    message[10..12].copy_from_slice(&arcount.to_be_bytes());
    Ok(())
}

/// A reply to `request` with `rcode`, its question and nothing else.
fn bare_reply(request: &Message, rcode: ResponseCode) -> Vec<u8> {
    let mut metadata = Metadata::response_from_request(&request.metadata);
    metadata.response_code = rcode;
    let mut reply = Message::new(metadata.id, MessageType::Response, metadata.op_code);
    reply.metadata = metadata;
    reply.queries.clone_from(&request.queries);
    reply.to_vec().unwrap_or_else(|_| header_only(metadata))
}

fn header_only(metadata: Metadata) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(12);
    let header = Header {
        metadata,
        counts: hickory_proto::op::HeaderCounts::default(),
    };
    let _ = header.emit(&mut BinEncoder::new(&mut bytes));
    bytes
}

/// NOTAUTH with an unsigned TSIG record carrying `error` (BADKEY, BADSIG).
fn error_reply(
    request: &Message,
    now: u64,
    signer: Option<&TSigner>,
    key_name: Name,
    error: TsigError,
) -> Vec<u8> {
    let mut reply = bare_reply(request, ResponseCode::NotAuth);
    let algorithm = signer.map_or_else(
        || {
            request.signature.as_deref().map_or(
                hickory_proto::rr::rdata::tsig::TsigAlgorithm::HmacSha256,
                |t| t.data.algorithm.clone(),
            )
        },
        |signer| signer.algorithm().clone(),
    );
    let tsig = TSIG::new(
        algorithm,
        now,
        crate::keys::TSIG_FUDGE,
        Vec::new(),
        request.metadata.id,
        Some(error),
        Vec::new(),
    );
    if append_tsig(&mut reply, key_name, tsig).is_err() {
        return bare_reply(request, ResponseCode::NotAuth);
    }
    reply
}

/// Seconds since the Unix epoch (TSIG's clock).
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::Algorithm;
    use hickory_proto::op::Query;
    use hickory_proto::rr::RecordType;
    use hickory_proto::rr::rdata::tsig::signed_bitmessage_to_buf;

    fn keyring() -> Keyring {
        Keyring::from_keys([Key::new("xfr", Algorithm::HmacSha256, &[7; 32]).expect("key")])
    }

    fn signed_request(key: &Key, time: u64) -> (Vec<u8>, Message) {
        let mut message = Message::query();
        message.metadata.id = 4242;
        message.add_query(Query::query(
            Name::from_ascii("svc.internal.").expect("name"),
            RecordType::AXFR,
        ));
        let (tsig, _) = key.tsig().sign_message(&message, time).expect("sign");
        message.signature = Some(tsig);
        let bytes = message.to_vec().expect("encode");
        let decoded = Message::from_vec(&bytes).expect("decode");
        (bytes, decoded)
    }

    #[test]
    fn signed_requests_verify_and_replies_chain() {
        let ring = keyring();
        let key = ring.get("xfr").expect("key").clone();
        let now = unix_now();
        let (bytes, request) = signed_request(&key, now);
        let Verdict::Signed { mut signer, .. } = verify(&bytes, &request, &ring, now) else {
            panic!("a good signature is accepted");
        };
        let (request_mac, _, _) = key
            .tsig()
            .verify_message_byte(&bytes, None, true)
            .expect("verifies");
        // Two reply messages, checked as a client checks a transfer.
        let mut first = bare_reply(&request, ResponseCode::NoError);
        signer.sign(&mut first, now).expect("sign");
        let mut second = bare_reply(&request, ResponseCode::NoError);
        signer.sign(&mut second, now).expect("sign");
        let (mac1, _, _) = key
            .tsig()
            .verify_message_byte(&first, Some(&request_mac), true)
            .expect("first reply verifies");
        let (tbs, record) =
            signed_bitmessage_to_buf(&second, Some(&mac1), false).expect("second parses");
        key.tsig()
            .verify(&tbs, &record.data.mac)
            .expect("second reply verifies chained to the first");
    }

    #[test]
    fn unknown_keys_bad_macs_and_old_times_are_refused() {
        let ring = keyring();
        let now = unix_now();
        let other = Key::new("other", Algorithm::HmacSha256, &[9; 32]).expect("key");
        let (bytes, request) = signed_request(&other, now);
        assert!(matches!(
            verify(&bytes, &request, &ring, now),
            Verdict::Refused {
                refusal: Refusal::UnknownKey(_),
                ..
            }
        ));
        let impostor = Key::new("xfr", Algorithm::HmacSha256, &[8; 32]).expect("key");
        let (bytes, request) = signed_request(&impostor, now);
        let Verdict::Refused { refusal, reply } = verify(&bytes, &request, &ring, now) else {
            panic!("a wrong secret is refused");
        };
        assert!(matches!(refusal, Refusal::BadSignature(_)));
        let reply = Message::from_vec(&reply).expect("reply decodes");
        assert_eq!(reply.metadata.response_code, ResponseCode::NotAuth);
        let key = ring.get("xfr").expect("key").clone();
        let (bytes, request) = signed_request(&key, now - 3600);
        assert!(matches!(
            verify(&bytes, &request, &ring, now),
            Verdict::Refused {
                refusal: Refusal::BadTime { .. },
                ..
            }
        ));
    }
}
