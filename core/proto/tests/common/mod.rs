//! Helpers the protocol tests share: deterministic keys, RNGs, bindings,
//! and whole runs with a hook that can change each message in transit.

#![allow(dead_code)]

use ed25519_dalek::SigningKey;
use keygate_proto::{
    Binding, ConfirmFailure, DeviceInfo, DevicePin, DeviceQr, GatewayPin, GatewayQr, Message,
    Paired, PairingError, PinCandidate, Verified,
};
use rand::SeedableRng;
use rand::rngs::StdRng;
use zeroize::Zeroizing;

pub const SESSION: &str = "0123456789abcdef0123456789abcdef";
pub const TOKEN: [u8; 16] = [0x42; 16];
pub const CA: [u8; 32] = [0xca; 32];

pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

pub fn device_key() -> SigningKey {
    SigningKey::from_bytes(&[7; 32])
}

pub fn info() -> DeviceInfo {
    DeviceInfo {
        device_id: "kg1devicetestid".into(),
        name: "Kitchen display".into(),
        capabilities: vec!["shell".into(), "metrics.v1".into()],
    }
}

pub fn binding() -> Binding {
    Binding {
        ca_fingerprint: CA,
        channel_binding: [0xcb; 32],
    }
}

pub fn candidates(pins: &[&str]) -> Vec<PinCandidate> {
    pins.iter()
        .enumerate()
        .map(|(i, pin)| PinCandidate {
            id: format!("code-{i}"),
            pin: Zeroizing::new((*pin).to_owned()),
        })
        .collect()
}

/// Which message a tamper hook sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Hello,
    Challenge,
    Confirm,
    Accepted,
}

/// How a run ended.
#[derive(Debug)]
pub enum Outcome {
    /// Both sides finished.
    Paired {
        device: Paired,
        gateway: Box<Verified>,
    },
    /// A message did not decode after tampering.
    Decode(Stage, keygate_proto::DecodeError),
    /// The device refused at a step (before sending or on an answer).
    Device(Stage, PairingError),
    /// The gateway refused at its hello/challenge step.
    GatewayStart(PairingError),
    /// The gateway's confirmation step failed.
    GatewayConfirm(ConfirmFailure),
}

impl Outcome {
    pub fn paired(self) -> (Paired, Verified) {
        match self {
            Outcome::Paired { device, gateway } => (device, *gateway),
            other => panic!("expected a pairing, got {other:?}"),
        }
    }
    pub fn confirm_failure(self) -> ConfirmFailure {
        match self {
            Outcome::GatewayConfirm(f) => f,
            other => panic!("expected a gateway confirmation failure, got {other:?}"),
        }
    }
}

/// Every message of one run, as sent on the wire.
#[derive(Debug, Default, Clone)]
pub struct Recording {
    pub hello: Vec<u8>,
    pub challenge: Vec<u8>,
    pub confirm: Vec<u8>,
    pub accepted: Vec<u8>,
}

fn transit(
    stage: Stage,
    msg: &Message,
    tamper: &mut dyn FnMut(Stage, Vec<u8>) -> Vec<u8>,
    rec: &mut Recording,
) -> Result<Message, Outcome> {
    let bytes = tamper(stage, msg.encode());
    match stage {
        Stage::Hello => rec.hello = bytes.clone(),
        Stage::Challenge => rec.challenge = bytes.clone(),
        Stage::Confirm => rec.confirm = bytes.clone(),
        Stage::Accepted => rec.accepted = bytes.clone(),
    }
    Message::decode(&bytes).map_err(|e| Outcome::Decode(stage, e))
}

pub struct PinRun<'a> {
    pub device_pin: &'a str,
    pub gateway_pins: &'a [&'a str],
    pub device_binding: Binding,
    pub gateway_binding: Binding,
    pub device_key: SigningKey,
}

impl<'a> PinRun<'a> {
    pub fn new(device_pin: &'a str, gateway_pins: &'a [&'a str]) -> Self {
        PinRun {
            device_pin,
            gateway_pins,
            device_binding: binding(),
            gateway_binding: binding(),
            device_key: device_key(),
        }
    }

    pub fn run(&self) -> Outcome {
        self.run_with(&mut |_, b| b).0
    }

    pub fn run_with(
        &self,
        tamper: &mut dyn FnMut(Stage, Vec<u8>) -> Vec<u8>,
    ) -> (Outcome, Recording) {
        let mut rec = Recording::default();
        let out = self.inner(tamper, &mut rec).unwrap_or_else(|o| o);
        (out, rec)
    }

    fn inner(
        &self,
        tamper: &mut dyn FnMut(Stage, Vec<u8>) -> Vec<u8>,
        rec: &mut Recording,
    ) -> Result<Outcome, Outcome> {
        let mut dev_rng = rng(1);
        let mut gw_rng = rng(2);
        let (dev, hello) = DevicePin::start(
            &mut dev_rng,
            &self.device_key,
            info(),
            self.device_pin,
            self.device_binding,
        )
        .map_err(|e| Outcome::Device(Stage::Hello, e))?;
        let hello = transit(Stage::Hello, &hello, tamper, rec)?;
        let (gw, challenge) = GatewayPin::on_hello(
            &mut gw_rng,
            hello,
            &candidates(self.gateway_pins),
            self.gateway_binding,
        )
        .map_err(Outcome::GatewayStart)?;
        let challenge = transit(Stage::Challenge, &challenge, tamper, rec)?;
        let (dev, confirm) = dev
            .on_challenge(challenge)
            .map_err(|e| Outcome::Device(Stage::Challenge, e))?;
        let confirm = transit(Stage::Confirm, &confirm, tamper, rec)?;
        let verified = gw.on_confirm(confirm).map_err(Outcome::GatewayConfirm)?;
        let accepted = transit(Stage::Accepted, &verified.reply, tamper, rec)?;
        let paired = dev
            .on_accepted(accepted)
            .map_err(|e| Outcome::Device(Stage::Accepted, e))?;
        Ok(Outcome::Paired {
            device: paired,
            gateway: Box::new(verified),
        })
    }
}

pub struct QrRun {
    pub pinned_ca: [u8; 32],
    pub device_token: [u8; 16],
    pub gateway_token: [u8; 16],
    pub device_binding: Binding,
    pub gateway_binding: Binding,
}

impl QrRun {
    pub fn new() -> Self {
        QrRun {
            pinned_ca: CA,
            device_token: TOKEN,
            gateway_token: TOKEN,
            device_binding: binding(),
            gateway_binding: binding(),
        }
    }

    pub fn run(&self) -> Outcome {
        self.run_with(&mut |_, b| b).0
    }

    pub fn run_with(
        &self,
        tamper: &mut dyn FnMut(Stage, Vec<u8>) -> Vec<u8>,
    ) -> (Outcome, Recording) {
        let mut rec = Recording::default();
        let out = self.inner(tamper, &mut rec).unwrap_or_else(|o| o);
        (out, rec)
    }

    fn inner(
        &self,
        tamper: &mut dyn FnMut(Stage, Vec<u8>) -> Vec<u8>,
        rec: &mut Recording,
    ) -> Result<Outcome, Outcome> {
        let mut dev_rng = rng(3);
        let mut gw_rng = rng(4);
        let (dev, hello) = DeviceQr::start(
            &mut dev_rng,
            &device_key(),
            info(),
            SESSION,
            self.device_token,
            self.pinned_ca,
            self.device_binding,
        )
        .map_err(|e| Outcome::Device(Stage::Hello, e))?;
        let hello = transit(Stage::Hello, &hello, tamper, rec)?;
        let Message::QrHello(hello) = hello else {
            return Err(Outcome::GatewayStart(PairingError::UnexpectedMessage {
                expected: "QrHello",
                got: hello.name(),
            }));
        };
        let (gw, challenge) = GatewayQr::challenge(
            &mut gw_rng,
            &hello,
            &self.gateway_token,
            self.gateway_binding,
        )
        .map_err(Outcome::GatewayStart)?;
        let challenge = transit(Stage::Challenge, &challenge, tamper, rec)?;
        let (dev, confirm) = dev
            .on_challenge(challenge)
            .map_err(|e| Outcome::Device(Stage::Challenge, e))?;
        let confirm = transit(Stage::Confirm, &confirm, tamper, rec)?;
        let verified = gw.on_confirm(confirm).map_err(Outcome::GatewayConfirm)?;
        let accepted = transit(Stage::Accepted, &verified.reply, tamper, rec)?;
        let paired = dev
            .on_accepted(accepted)
            .map_err(|e| Outcome::Device(Stage::Accepted, e))?;
        Ok(Outcome::Paired {
            device: paired,
            gateway: Box::new(verified),
        })
    }
}
