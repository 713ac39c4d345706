//! A QR code's modules and the three ways Keygate draws them: on a
//! terminal (Unicode half blocks), as PNG and as SVG.
//!
//! The code is encoded by the `qrcode` crate at error-correction level M
//! (15 %) in the smallest version that holds the text; every rendering
//! adds the standard quiet zone of [`QUIET_ZONE`] light modules on each
//! side.
//!
//! - **Terminal**: two module rows per text line. A *light* module is drawn
//!   with ink (`█`, `▀`, `▄`) and a dark one is left blank, so on the usual
//!   light-on-dark terminal the code shows dark on light, as scanners
//!   expect. On a dark-on-light terminal, write a PNG or SVG instead.
//! - **PNG**: 8-bit greyscale, [`PNG_MODULE_PIXELS`] pixels per module,
//!   black on white.
//! - **SVG**: a `viewBox` of one unit per module, a white background `rect`
//!   and one black `path` made of a rectangle (`M x y h n v 1 h -n z`) per
//!   horizontal run of dark modules.

use std::fmt::Write as _;

use qrcode::{Color, EcLevel, QrCode};

/// Light modules around the code on each side (the standard's minimum).
pub const QUIET_ZONE: usize = 4;
/// Pixels per module side in a PNG.
pub const PNG_MODULE_PIXELS: usize = 8;

/// Why a QR code could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RenderError {
    /// The text does not fit in a QR code.
    #[error("cannot make a QR code of {len} bytes: {cause}")]
    Encode {
        /// The text's length.
        len: usize,
        /// The encoder's reason.
        cause: qrcode::types::QrError,
    },
    /// The PNG encoder failed.
    #[error("cannot write the PNG: {0}")]
    Png(#[from] png::EncodingError),
}

/// The modules of a QR code, without quiet zone.
#[derive(Clone, PartialEq, Eq)]
pub struct QrMatrix {
    width: usize,
    dark: Vec<bool>,
}

impl std::fmt::Debug for QrMatrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The modules encode a secret: show only the size.
        f.debug_struct("QrMatrix")
            .field("width", &self.width)
            .finish_non_exhaustive()
    }
}

impl QrMatrix {
    /// Encodes `text` (byte mode, error correction level M).
    ///
    /// # Errors
    /// [`RenderError::Encode`] when the text is too long for a QR code.
    pub fn encode(text: &str) -> Result<QrMatrix, RenderError> {
        let code =
            QrCode::with_error_correction_level(text.as_bytes(), EcLevel::M).map_err(|cause| {
                RenderError::Encode {
                    len: text.len(),
                    cause,
                }
            })?;
        let dark = code
            .to_colors()
            .into_iter()
            .map(|c| c == Color::Dark)
            .collect();
        Ok(QrMatrix {
            width: code.width(),
            dark,
        })
    }

    /// Modules per side, without quiet zone.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Whether the module at column `x`, row `y` is dark; coordinates
    /// include the quiet zone (so `0..width() + 2 * QUIET_ZONE`), and
    /// anything outside the code is light.
    pub fn is_dark_with_quiet_zone(&self, x: usize, y: usize) -> bool {
        let (Some(x), Some(y)) = (x.checked_sub(QUIET_ZONE), y.checked_sub(QUIET_ZONE)) else {
            return false;
        };
        x < self.width && y < self.width && self.dark[y * self.width + x]
    }

    /// Modules per side with the quiet zone.
    fn side(&self) -> usize {
        self.width + 2 * QUIET_ZONE
    }

    /// The code for a terminal: Unicode half blocks, two module rows per
    /// line, light modules inked (see the [module docs](self)); lines end
    /// with `\n`.
    pub fn to_terminal(&self) -> String {
        let side = self.side();
        let mut out = String::with_capacity(side.div_ceil(2) * (side * 3 + 1));
        for y in (0..side).step_by(2) {
            for x in 0..side {
                let top = !self.is_dark_with_quiet_zone(x, y);
                // Past the last row is light, like the quiet zone.
                let bottom = y + 1 >= side || !self.is_dark_with_quiet_zone(x, y + 1);
                out.push(match (top, bottom) {
                    (true, true) => '█',
                    (true, false) => '▀',
                    (false, true) => '▄',
                    (false, false) => ' ',
                });
            }
            out.push('\n');
        }
        out
    }

    /// The code as an SVG document (see the [module docs](self)).
    pub fn to_svg(&self) -> String {
        let side = self.side();
        let mut path = String::new();
        for y in 0..side {
            let mut x = 0;
            while x < side {
                if !self.is_dark_with_quiet_zone(x, y) {
                    x += 1;
                    continue;
                }
                let start = x;
                while x < side && self.is_dark_with_quiet_zone(x, y) {
                    x += 1;
                }
                let run = x - start;
                let _ = write!(path, "M{start} {y}h{run}v1h-{run}z");
            }
        }
        let pixels = side * PNG_MODULE_PIXELS;
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
             <svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" \
             width=\"{pixels}\" height=\"{pixels}\" viewBox=\"0 0 {side} {side}\" \
             shape-rendering=\"crispEdges\">\n\
             <rect width=\"{side}\" height=\"{side}\" fill=\"#ffffff\"/>\n\
             <path fill=\"#000000\" d=\"{path}\"/>\n\
             </svg>\n"
        )
    }

    /// The code as a PNG file's bytes (see the [module docs](self)).
    ///
    /// # Errors
    /// [`RenderError::Png`] if the encoder fails.
    pub fn to_png(&self) -> Result<Vec<u8>, RenderError> {
        let side = self.side();
        let pixels = side * PNG_MODULE_PIXELS;
        let mut image = Vec::with_capacity(pixels * pixels);
        for py in 0..pixels {
            for px in 0..pixels {
                let dark =
                    self.is_dark_with_quiet_zone(px / PNG_MODULE_PIXELS, py / PNG_MODULE_PIXELS);
                image.push(if dark { 0 } else { 255 });
            }
        }
        let size = u32::try_from(pixels).unwrap_or(u32::MAX);
        let mut out = Vec::new();
        let mut encoder = png::Encoder::new(&mut out, size, size);
        encoder.set_color(png::ColorType::Grayscale);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header()?;
        writer.write_image_data(&image)?;
        writer.finish()?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renderings_keep_every_module() {
        let m = QrMatrix::encode("keygate://pair?v=1").unwrap();
        let side = m.width() + 2 * QUIET_ZONE;
        assert_eq!(m.width() % 4, 1, "QR widths are 17 + 4 × version");
        // Terminal: half as many lines, each `side` characters.
        let term = m.to_terminal();
        let lines: Vec<&str> = term.lines().collect();
        assert_eq!(lines.len(), side.div_ceil(2));
        for (row, line) in lines.iter().enumerate() {
            let chars: Vec<char> = line.chars().collect();
            assert_eq!(chars.len(), side);
            for (x, c) in chars.iter().enumerate() {
                let top_light = matches!(c, '█' | '▀');
                let bottom_light = matches!(c, '█' | '▄');
                assert_eq!(top_light, !m.is_dark_with_quiet_zone(x, 2 * row));
                if 2 * row + 1 < side {
                    assert_eq!(bottom_light, !m.is_dark_with_quiet_zone(x, 2 * row + 1));
                }
            }
        }
        // The finder pattern's corner is dark, the quiet zone light.
        assert!(m.is_dark_with_quiet_zone(QUIET_ZONE, QUIET_ZONE));
        assert!(!m.is_dark_with_quiet_zone(0, 0));
        assert!(!m.is_dark_with_quiet_zone(side, side));
        let svg = m.to_svg();
        assert!(
            svg.contains(&format!("viewBox=\"0 0 {side} {side}\"")),
            "{svg}"
        );
        let png = m.to_png().unwrap();
        assert_eq!(&png[1..4], b"PNG");
    }

    #[test]
    fn debug_does_not_show_the_modules() {
        let m = QrMatrix::encode("secret").unwrap();
        assert_eq!(format!("{m:?}"), "QrMatrix { width: 21, .. }");
    }
}
