//! QR codes for enrollment URIs, in the three forms Tessera shows them: a terminal rendering
//! for the CLI, SVG for web pages and PNG (as a data URI) for API clients.

use qrcode::render::{svg, unicode};
use qrcode::{Color, EcLevel, QrCode};

/// The text does not fit in a QR code.
#[derive(Debug, thiserror::Error)]
#[error("cannot render a QR code: {0}")]
pub struct QrError(String);

fn encode(text: &str) -> Result<QrCode, QrError> {
    QrCode::with_error_correction_level(text.as_bytes(), EcLevel::M)
        .map_err(|e| QrError(e.to_string()))
}

/// Renders with Unicode half blocks, two modules per character row, dark on light, so that it
/// scans from a terminal with either colour scheme.
pub fn qr_terminal(text: &str) -> Result<String, QrError> {
    let code = encode(text)?;
    Ok(code
        .render::<unicode::Dense1x2>()
        .dark_color(unicode::Dense1x2::Dark)
        .light_color(unicode::Dense1x2::Light)
        .quiet_zone(true)
        .build())
}

/// Renders as a standalone SVG document.
pub fn qr_svg(text: &str) -> Result<String, QrError> {
    let code = encode(text)?;
    Ok(code
        .render::<svg::Color<'_>>()
        .min_dimensions(200, 200)
        .dark_color(svg::Color("#000000"))
        .light_color(svg::Color("#ffffff"))
        .quiet_zone(true)
        .build())
}

/// Renders as an 8-bit greyscale PNG with `scale` pixels per module and a 4-module quiet zone.
pub fn qr_png(text: &str, scale: usize) -> Result<Vec<u8>, QrError> {
    let code = encode(text)?;
    let scale = scale.clamp(1, 32);
    let modules = code.width();
    let colors = code.to_colors();
    let quiet = 4;
    let side = (modules + 2 * quiet) * scale;
    let mut pixels = vec![255u8; side * side];
    for (i, color) in colors.iter().enumerate() {
        if *color != Color::Dark {
            continue;
        }
        let (mx, my) = (i % modules, i / modules);
        for dy in 0..scale {
            let row = (my + quiet) * scale + dy;
            let start = row * side + (mx + quiet) * scale;
            if let Some(run) = pixels.get_mut(start..start + scale) {
                run.fill(0);
            }
        }
    }
    let side_u32 = u32::try_from(side).map_err(|e| QrError(e.to_string()))?;
    let mut out = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut out, side_u32, side_u32);
        encoder.set_color(png::ColorType::Grayscale);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().map_err(|e| QrError(e.to_string()))?;
        writer
            .write_image_data(&pixels)
            .map_err(|e| QrError(e.to_string()))?;
        writer.finish().map_err(|e| QrError(e.to_string()))?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const URI: &str =
        "otpauth://totp/ACME:alice?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=ACME";

    #[test]
    fn terminal_rendering_uses_half_blocks() {
        let text = qr_terminal(URI).unwrap();
        assert!(text.lines().count() > 10);
        assert!(text.contains('█') || text.contains('▀') || text.contains('▄'));
    }

    #[test]
    fn svg_is_an_svg_document() {
        let svg = qr_svg(URI).unwrap();
        assert!(svg.contains("<svg"));
        assert!(svg.trim_end().ends_with("</svg>"));
    }

    #[test]
    fn png_has_signature_and_size() {
        let png = qr_png(URI, 4).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        let decoder = png::Decoder::new(std::io::Cursor::new(png));
        let reader = decoder.read_info().unwrap();
        let info = reader.info();
        assert_eq!(info.width, info.height);
        assert_eq!(info.width % 4, 0);
    }

    #[test]
    fn oversized_text_is_an_error() {
        let huge = "x".repeat(5000);
        assert!(qr_png(&huge, 4).is_err());
    }
}
