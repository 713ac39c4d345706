//! What a node offers and how it answers an invocation: the built-in
//! `echo`, and a clear failure for a capability it registered but has no
//! handler for.

use keygate_proto::{DeviceInfo, Invoke, InvokeResult, MAX_PAYLOAD_LEN, Message, PairingError};

/// The capability every node serves: answers with the payload it got.
pub const ECHO: &str = "echo";

/// A capability list the protocol refuses.
#[derive(Debug, thiserror::Error)]
#[error("capabilities: {problem} (at most 16, each 1 to 32 characters of a-z 0-9 . _ -)")]
pub struct CapabilityError {
    /// What is wrong.
    pub problem: &'static str,
}

/// The capabilities a node registers: `echo` first, then `extra` in
/// order without repeats. Refused when the protocol would refuse them.
pub fn node_capabilities(extra: &[String]) -> Result<Vec<String>, CapabilityError> {
    let mut all = vec![ECHO.to_owned()];
    for c in extra {
        if !all.contains(c) {
            all.push(c.clone());
        }
    }
    let info = DeviceInfo {
        device_id: "kgd1".into(),
        name: "node".into(),
        capabilities: all,
    };
    match info.check() {
        Ok(()) => Ok(info.capabilities),
        Err(PairingError::InvalidInput { problem, .. }) => Err(CapabilityError { problem }),
        Err(_) => Err(CapabilityError { problem: "refused" }),
    }
}

/// Answers `invoke` for a node that registered `capabilities`.
pub fn answer(invoke: &Invoke, capabilities: &[String]) -> InvokeResult {
    let failed = |text: String| InvokeResult {
        invocation_id: invoke.invocation_id.clone(),
        ok: false,
        payload: truncated(text.into_bytes()),
    };
    if !capabilities.contains(&invoke.capability) {
        return failed(format!(
            "this node does not offer capability {:?}",
            invoke.capability
        ));
    }
    match invoke.capability.as_str() {
        ECHO => InvokeResult {
            invocation_id: invoke.invocation_id.clone(),
            ok: true,
            payload: invoke.payload.clone(),
        },
        other => failed(format!(
            "capability {other:?} is registered on this node, but the node has no built-in handler for it"
        )),
    }
}

fn truncated(mut bytes: Vec<u8>) -> Vec<u8> {
    bytes.truncate(MAX_PAYLOAD_LEN);
    bytes
}

/// What a frame on a stream the gateway opened calls for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Send this `InvokeResult` back on the stream.
    Answer(Vec<u8>),
    /// Not an invocation: nothing to answer (the reason, for the log).
    Ignore(String),
}

/// Handles one frame the gateway sent on a stream it opened.
pub fn reply_to(frame: &[u8], capabilities: &[String]) -> Reply {
    match Message::decode(frame) {
        Ok(Message::Invoke(invoke)) => {
            Reply::Answer(Message::InvokeResult(answer(&invoke, capabilities)).encode())
        }
        Ok(other) => Reply::Ignore(format!(
            "the gateway sent {} on a stream it opened; only Invoke is expected there",
            other.name()
        )),
        Err(e) => Reply::Ignore(format!("an undecodable message from the gateway: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invoke(capability: &str, payload: &[u8]) -> Invoke {
        Invoke {
            invocation_id: "inv-1".into(),
            capability: capability.into(),
            payload: payload.to_vec(),
        }
    }

    fn caps(list: &[&str]) -> Vec<String> {
        list.iter().map(|c| (*c).to_owned()).collect()
    }

    #[test]
    fn echo_answers_with_the_payload() {
        let result = answer(&invoke("echo", b"hello \x00 world"), &caps(&["echo"]));
        assert_eq!(
            result,
            InvokeResult {
                invocation_id: "inv-1".into(),
                ok: true,
                payload: b"hello \x00 world".to_vec(),
            }
        );
        let empty = answer(&invoke("echo", b""), &caps(&["echo"]));
        assert!(empty.ok && empty.payload.is_empty());
    }

    #[test]
    fn a_registered_capability_without_a_handler_fails_naming_it() {
        let result = answer(&invoke("shell", b"ls"), &caps(&["echo", "shell"]));
        assert!(!result.ok);
        assert_eq!(result.invocation_id, "inv-1");
        let text = String::from_utf8(result.payload).unwrap();
        assert!(
            text.contains("\"shell\"") && text.contains("no built-in handler"),
            "{text}"
        );
    }

    #[test]
    fn a_capability_the_node_did_not_register_fails_even_echo() {
        let result = answer(&invoke("browser", b""), &caps(&["echo"]));
        assert!(!result.ok);
        let text = String::from_utf8(result.payload).unwrap();
        assert!(
            text.contains("does not offer") && text.contains("browser"),
            "{text}"
        );
        assert!(!answer(&invoke("echo", b"x"), &caps(&["shell"])).ok);
    }

    #[test]
    fn frames_that_are_invocations_are_answered_and_others_ignored() {
        let frame = Message::Invoke(invoke("echo", b"ping")).encode();
        let Reply::Answer(bytes) = reply_to(&frame, &caps(&["echo"])) else {
            panic!("an invocation is answered");
        };
        let Ok(Message::InvokeResult(r)) = Message::decode(&bytes) else {
            panic!("an InvokeResult");
        };
        assert!(r.ok && r.payload == b"ping" && r.invocation_id == "inv-1");

        let other = Message::Heartbeat(keygate_proto::Heartbeat {
            device_id: "kgd1x".into(),
        })
        .encode();
        assert!(
            matches!(reply_to(&other, &caps(&["echo"])), Reply::Ignore(why) if why.contains("Heartbeat"))
        );
        assert!(matches!(
            reply_to(b"\x01", &caps(&["echo"])),
            Reply::Ignore(_)
        ));
        assert!(matches!(reply_to(b"", &caps(&["echo"])), Reply::Ignore(_)));
    }

    #[test]
    fn node_capabilities_always_start_with_echo_and_are_checked() {
        assert_eq!(node_capabilities(&[]).unwrap(), caps(&["echo"]));
        assert_eq!(
            node_capabilities(&caps(&["shell", "echo", "shell", "browser"])).unwrap(),
            caps(&["echo", "shell", "browser"])
        );
        assert!(node_capabilities(&caps(&["Shell"])).is_err());
        assert!(node_capabilities(&caps(&[""])).is_err());
        let many: Vec<String> = (0..16).map(|i| format!("c{i}")).collect();
        let err = node_capabilities(&many).unwrap_err();
        assert!(err.to_string().contains("16"), "{err}");
        assert_eq!(node_capabilities(&many[..15]).unwrap().len(), 16);
    }
}
