//! `keygate pairing mint` as an operator runs it: the real binary, the
//! encrypted filesystem store, and a standard QR reader (rqrr) to read back
//! every rendering.

use std::path::Path;
use std::time::{Duration, SystemTime};

use keygate_core::pairing::PairingUri;
use keygate_core::state::pairing::{Method, PAIRING_PREFIX, PairingSession};
use keygate_tests::{json, keygate, ok, open_identity, run, setup};
use serde_json::Value;

/// The keys of a JSON object, sorted.
fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    k.sort_unstable();
    k
}

/// Runs `args` and checks that its `expires_at` is `ttl` from now (to the
/// second, allowing for the run's own time).
fn mint_expiring_in(config: &Path, args: &[&str], ttl: Duration) -> Value {
    let earliest = keygate_core::time::rfc3339(SystemTime::now() + ttl);
    let out = json(config, args);
    let latest = keygate_core::time::rfc3339(SystemTime::now() + ttl);
    let expires_at = out["expires_at"].as_str().unwrap();
    assert!(
        earliest.as_str() <= expires_at && expires_at <= latest.as_str(),
        "expires_at {expires_at} not within {earliest}..={latest}"
    );
    out
}

fn qr_uri(config: &Path, extra: &[&str]) -> String {
    let mut args = vec!["pairing", "mint", "--qr", "--json"];
    args.extend_from_slice(extra);
    let out = json(config, &args);
    assert_eq!(keys(&out), ["expires_at", "kind", "uri"]);
    assert_eq!(out["kind"], "qr");
    out["uri"].as_str().unwrap().to_owned()
}

/// Every pairing session in the store, read through the store plugin.
fn sessions(config: &Path) -> Vec<PairingSession> {
    let (host, _manager) = open_identity(config);
    host.store
        .list(PAIRING_PREFIX)
        .unwrap()
        .iter()
        .map(|key| {
            let value = host.store.get(key).unwrap().unwrap().value;
            serde_json::from_slice(&value).unwrap()
        })
        .collect()
}

/// Decodes the one QR code in a greyscale image.
fn decode_qr(width: usize, height: usize, luma: impl Fn(usize, usize) -> u8) -> String {
    let mut image = rqrr::PreparedImage::prepare_from_greyscale(width, height, luma);
    let grids = image.detect_grids();
    assert_eq!(grids.len(), 1, "expected one QR code");
    grids[0].decode().expect("QR code decodes").1
}

/// Decodes a grid of modules (`true` = dark), drawn at 4 pixels a module.
fn decode_modules(grid: &[Vec<bool>]) -> String {
    const SCALE: usize = 4;
    let side = grid.len();
    assert!(grid.iter().all(|row| row.len() == side), "a square grid");
    decode_qr(side * SCALE, side * SCALE, |x, y| {
        if grid[y / SCALE][x / SCALE] { 0 } else { 255 }
    })
}

#[test]
fn a_pin_is_eight_digits_and_lives_ten_minutes_by_default() {
    let (_dir, config) = setup("");
    let out = mint_expiring_in(
        &config,
        &["pairing", "mint", "--pin", "--json"],
        Duration::from_secs(600),
    );
    assert_eq!(keys(&out), ["code", "expires_at", "kind"]);
    assert_eq!(out["kind"], "pin");
    let code = out["code"].as_str().unwrap();
    assert_eq!(code.len(), 8, "{code}");
    assert!(code.bytes().all(|b| b.is_ascii_digit()), "{code}");
    assert!(!keygate_core::pairing::pin::is_trivial(code));
}

#[test]
fn ttl_flag_overrides_the_config() {
    let (_dir, config) = setup("[pairing]\ncode_ttl = \"1h\"\n");
    mint_expiring_in(
        &config,
        &["pairing", "mint", "--pin", "--json", "--ttl", "90s"],
        Duration::from_secs(90),
    );
    mint_expiring_in(
        &config,
        &["pairing", "mint", "--qr", "--json"],
        Duration::from_secs(3600),
    );
    let out = run(keygate(&config).args(["pairing", "mint", "--pin", "--ttl", "25h"]));
    assert_eq!(out.code, Some(1));
    assert!(
        out.stderr
            .contains("error: --ttl: must be between 30s and 24h"),
        "{}",
        out.stderr
    );
}

#[test]
fn pin_digits_and_max_attempts_come_from_the_config() {
    let (_dir, config) = setup("[pairing]\npin_digits = 6\nmax_attempts = 3\n");
    let out = json(&config, &["pairing", "mint", "--pin", "--json"]);
    let code = out["code"].as_str().unwrap().to_owned();
    assert_eq!(code.len(), 6, "{code}");
    let stored = sessions(&config);
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].secret.as_str(), code);
    assert_eq!(stored[0].method, Method::Pin);
    assert_eq!(stored[0].attempts_left, 3);
}

#[test]
fn invalid_config_values_name_file_line_and_field() {
    for (extra, field) in [
        (
            "[pairing]\npin_digits = 4\n",
            "pairing.pin_digits: must be between 6 and 12",
        ),
        (
            "[pairing]\ncode_ttl = \"2w\"\n",
            "pairing.code_ttl: \"2w\" is not a duration",
        ),
        (
            "[pairing]\ncode_ttl = \"10s\"\n",
            "pairing.code_ttl: must be between 30s and 24h",
        ),
        (
            "[pairing]\nmax_attempts = 50\n",
            "pairing.max_attempts: must be between 1 and 20",
        ),
        (
            "[gateway]\nadvertise = [\"a b\"]\n",
            "gateway.advertise: \"a b\" is not a gateway address",
        ),
        (
            "[gateway]\nlisten = \"nowhere\"\n",
            "gateway.listen: \"nowhere\" is not IP:PORT",
        ),
    ] {
        let (_dir, config) = setup(extra);
        let out = run(keygate(&config).args(["pairing", "mint", "--pin"]));
        assert_eq!(out.code, Some(1), "{extra}");
        let expected = format!("{}:5: {field}", config.display());
        assert!(out.stderr.contains(&expected), "{expected}\n{}", out.stderr);
        assert!(!config.parent().unwrap().join("state").exists(), "{extra}");
    }
}

#[test]
fn qr_uri_carries_the_ca_fingerprint_the_advertised_addresses_and_a_live_token() {
    let (_dir, config) = setup(
        "[gateway]\nlisten = \"0.0.0.0:9443\"\nadvertise = [\"gw.example.net\", \"192.0.2.7:7000\", \"2001:db8::7\"]\n",
    );
    let text = qr_uri(&config, &[]);
    let uri = PairingUri::parse(&text).unwrap();
    let gateways: Vec<String> = uri.gateways.iter().map(ToString::to_string).collect();
    assert_eq!(
        gateways,
        [
            "gw.example.net:9443",
            "192.0.2.7:7000",
            "[2001:db8::7]:9443"
        ]
    );
    let (_host, manager) = open_identity(&config);
    assert_eq!(
        &uri.ca_fingerprint,
        manager.ca().fingerprint().as_bytes(),
        "the URI pins this gateway's CA"
    );
    let ca = json(&config, &["ca", "show", "--json"]);
    assert_eq!(ca["fingerprint"], hex::encode(uri.ca_fingerprint));
    let session = manager
        .pairing_session(&hex::encode(uri.session_id), SystemTime::now())
        .unwrap()
        .expect("the session is live");
    assert_eq!(session.method, Method::Qr);
    assert_eq!(session.secret.as_str(), hex::encode(*uri.token));
}

#[test]
fn default_config_advertises_localhost_on_the_listen_port() {
    let (_dir, config) = setup("");
    let uri = PairingUri::parse(&qr_uri(&config, &[])).unwrap();
    let gateways: Vec<String> = uri.gateways.iter().map(ToString::to_string).collect();
    assert_eq!(gateways, ["localhost:7443", "127.0.0.1:7443"]);
}

#[test]
fn png_decodes_to_exactly_the_uri() {
    let (dir, config) = setup("");
    let png_path = dir.path().join("code.png");
    let uri = qr_uri(&config, &["--png", png_path.to_str().unwrap()]);
    let file = std::io::BufReader::new(std::fs::File::open(&png_path).unwrap());
    let mut reader = png::Decoder::new(file).read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!(info.color_type, png::ColorType::Grayscale);
    assert_eq!(info.bit_depth, png::BitDepth::Eight);
    let (w, h) = (info.width as usize, info.height as usize);
    let decoded = decode_qr(w, h, |x, y| buf[y * info.line_size + x]);
    assert_eq!(decoded, uri);
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&png_path).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "the image holds the token");
}

#[test]
fn svg_decodes_to_exactly_the_uri() {
    let (dir, config) = setup("");
    let svg_path = dir.path().join("code.svg");
    let uri = qr_uri(&config, &["--svg", svg_path.to_str().unwrap()]);
    let svg = std::fs::read_to_string(&svg_path).unwrap();
    let attr = |name: &str| {
        let start = svg.find(&format!(" {name}=\"")).expect(name) + name.len() + 3;
        &svg[start..start + svg[start..].find('"').unwrap()]
    };
    let view_box: Vec<usize> = attr("viewBox")
        .split(' ')
        .map(|n| n.parse().unwrap())
        .collect();
    assert_eq!(view_box[..2], [0, 0]);
    let side = view_box[2];
    assert_eq!(view_box[3], side);
    // Each dark run is `M<x> <y>h<n>v1h-<n>z`.
    let mut grid = vec![vec![false; side]; side];
    for run in attr("d").split('M').filter(|r| !r.is_empty()) {
        let (x, rest) = run.split_once(' ').unwrap();
        let (y, rest) = rest.split_once('h').unwrap();
        let (n, rest) = rest.split_once('v').unwrap();
        let n: usize = n.parse().unwrap();
        assert_eq!(rest, format!("1h-{n}z"));
        let (x, y): (usize, usize) = (x.parse().unwrap(), y.parse().unwrap());
        for cell in &mut grid[y][x..x + n] {
            *cell = true;
        }
    }
    assert_eq!(decode_modules(&grid), uri);
}

#[test]
fn terminal_qr_decodes_to_the_uri_printed_below_it() {
    let (_dir, config) = setup("");
    let out = ok(&config, &["pairing", "mint", "--qr"]);
    let lines: Vec<&str> = out.stdout.lines().collect();
    let blank = lines
        .iter()
        .position(|l| l.is_empty())
        .expect("a blank line");
    let uri = lines[blank + 1];
    assert!(uri.starts_with("keygate://pair?v=1&"), "{uri}");
    assert!(
        lines[blank + 2].starts_with("expires_at  "),
        "{}",
        out.stdout
    );
    // Two module rows a line; ink is a light module.
    let mut grid = Vec::new();
    for line in &lines[..blank] {
        let (top, bottom): (Vec<bool>, Vec<bool>) = line
            .chars()
            .map(|c| match c {
                '█' => (false, false),
                '▀' => (false, true),
                '▄' => (true, false),
                ' ' => (true, true),
                other => panic!("unexpected {other:?} in the drawing"),
            })
            .unzip();
        grid.push(top);
        grid.push(bottom);
    }
    // The last line's bottom half is padding when the side is odd.
    let side = grid[0].len();
    grid.truncate(side);
    assert_eq!(decode_modules(&grid), uri);
    PairingUri::parse(uri).unwrap();
}

#[test]
fn codes_never_reach_a_state_file_or_the_log() {
    let (dir, config) = setup("");
    let mut secrets: Vec<Vec<u8>> = Vec::new();
    for (method, verbosity) in [("--pin", "-vv"), ("--qr", "-vvv"), ("--pin", "-v")] {
        let out = run(keygate(&config)
            .env("KEYGATE_LOG", "trace")
            .args(["pairing", "mint", method, "--json", verbosity]));
        assert!(out.ok, "{}", out.stderr);
        assert!(
            out.stderr.contains("pairing code minted"),
            "the log is on: {}",
            out.stderr
        );
        let v: Value = serde_json::from_str(&out.stdout).unwrap();
        let secret = match v["kind"].as_str().unwrap() {
            "pin" => v["code"].as_str().unwrap().to_owned(),
            _ => {
                let uri = PairingUri::parse(v["uri"].as_str().unwrap()).unwrap();
                secrets.push(uri.token.to_vec());
                hex::encode(*uri.token)
            }
        };
        assert!(
            !out.stderr.contains(&secret),
            "{secret} logged:\n{}",
            out.stderr
        );
        secrets.push(secret.into_bytes());
    }
    // Also with the default logging of a plain run.
    let out = ok(&config, &["pairing", "mint", "--pin"]);
    let pin = out
        .stdout
        .lines()
        .next()
        .unwrap()
        .trim_start_matches("pin")
        .trim();
    assert!(!out.stderr.contains(pin));
    secrets.push(pin.as_bytes().to_vec());

    let mut files = 0;
    let mut stack = vec![dir.path().join("state")];
    while let Some(folder) = stack.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            files += 1;
            let bytes = std::fs::read(&path).unwrap();
            let name = path.to_string_lossy().into_owned();
            for secret in &secrets {
                assert!(
                    !bytes.windows(secret.len()).any(|w| w == secret.as_slice()),
                    "a code is in clear in {name}"
                );
                assert!(
                    !name.contains(std::str::from_utf8(secret).unwrap_or("\u{0}")),
                    "a code is in the file name {name}"
                );
            }
        }
    }
    assert!(files >= 4, "the sessions were written ({files} files)");
}

#[test]
fn two_mints_make_two_distinct_live_sessions() {
    let (_dir, config) = setup("");
    let a = json(&config, &["pairing", "mint", "--pin", "--json"]);
    let b = json(&config, &["pairing", "mint", "--pin", "--json"]);
    let x = PairingUri::parse(&qr_uri(&config, &[])).unwrap();
    let y = PairingUri::parse(&qr_uri(&config, &[])).unwrap();
    assert_ne!(x.session_id, y.session_id);
    assert_ne!(x.token, y.token);
    let stored = sessions(&config);
    assert_eq!(stored.len(), 4);
    let mut ids: Vec<&str> = stored.iter().map(|s| s.id.as_str()).collect();
    ids.dedup();
    assert_eq!(ids.len(), 4, "distinct session ids");
    let pins: Vec<&str> = stored
        .iter()
        .filter(|s| s.method == Method::Pin)
        .map(|s| s.secret.as_str())
        .collect();
    assert_eq!(pins.len(), 2);
    for minted in [&a, &b] {
        assert!(pins.contains(&minted["code"].as_str().unwrap()));
    }
    let (_host, manager) = open_identity(&config);
    for s in &stored {
        assert_eq!(s.attempts_left, 5);
        let live = manager.pairing_session(&s.id, SystemTime::now()).unwrap();
        assert!(live.is_ok(), "{} is live: {live:?}", s.id);
    }
}

#[test]
fn exactly_one_method_and_images_only_for_qr() {
    let (dir, config) = setup("");
    for args in [
        &["pairing", "mint"][..],
        &["pairing", "mint", "--pin", "--qr"],
        &["pairing", "mint", "--pin", "--png", "x.png"],
        &["pairing", "mint", "--pin", "--svg", "x.svg"],
    ] {
        let out = run(keygate(&config).args(args));
        assert_eq!(out.code, Some(2), "{args:?}: usage error\n{}", out.stderr);
        assert!(out.stderr.contains("Usage:"), "{}", out.stderr);
    }
    assert!(!dir.path().join("state").exists(), "nothing was minted");
}
