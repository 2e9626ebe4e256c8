//! Image previews: decoded with bounded memory, scaled down to fit a size, encoded in
//! the asked format (pure-Rust `image`). Generated once per file, size and format, then
//! kept in the store under `previews/{sha256}/{size}.{format}`.

use std::{collections::HashMap, io::Cursor, sync::Arc};

use image::{DynamicImage, ImageFormat, ImageReader, Limits};
use serde::Deserialize;
use tokio::sync::Mutex;

use crate::storage::PREVIEWS_PREFIX;

/// Preview sizes: the longest side, in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PreviewSize {
    /// 160 px.
    Small,
    /// 480 px.
    Medium,
    /// 1200 px.
    Large,
}

impl PreviewSize {
    /// The longest side.
    pub fn pixels(self) -> u32 {
        match self {
            Self::Small => 160,
            Self::Medium => 480,
            Self::Large => 1200,
        }
    }

    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Small => "small",
            Self::Medium => "medium",
            Self::Large => "large",
        }
    }
}

/// Preview formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PreviewFormat {
    /// WebP (lossless).
    Webp,
    /// JPEG.
    Jpeg,
    /// PNG.
    Png,
}

impl PreviewFormat {
    /// The file extension.
    pub fn extension(self) -> &'static str {
        match self {
            Self::Webp => "webp",
            Self::Jpeg => "jpeg",
            Self::Png => "png",
        }
    }

    /// The MIME type.
    pub fn mime(self) -> &'static str {
        match self {
            Self::Webp => "image/webp",
            Self::Jpeg => "image/jpeg",
            Self::Png => "image/png",
        }
    }

    fn image_format(self) -> ImageFormat {
        match self {
            Self::Webp => ImageFormat::WebP,
            Self::Jpeg => ImageFormat::Jpeg,
            Self::Png => ImageFormat::Png,
        }
    }
}

/// Types previews are made of (SVG is never rendered: it is a document of its own).
pub fn has_preview(mime: &str) -> bool {
    matches!(
        mime,
        "image/png" | "image/jpeg" | "image/gif" | "image/webp"
    )
}

/// Largest source image decoded: dimensions and memory.
const MAX_SIDE: u32 = 16_384;
const MAX_DECODE_BYTES: u64 = 512 * 1024 * 1024;

/// Where a preview is kept.
pub fn preview_path(sha256: &str, size: PreviewSize, format: PreviewFormat) -> String {
    format!(
        "{PREVIEWS_PREFIX}/{sha256}/{}.{}",
        size.as_str(),
        format.extension()
    )
}

/// Why no preview could be made.
#[derive(Debug, thiserror::Error)]
#[error("the image cannot be previewed: {0}")]
pub struct PreviewError(String);

/// Renders a preview of `source` (the whole image file): scaled down to fit
/// `size` (never up), in `format`. CPU-bound: run it on a blocking thread.
pub fn render(
    source: &[u8],
    size: PreviewSize,
    format: PreviewFormat,
) -> Result<Vec<u8>, PreviewError> {
    let mut reader = ImageReader::new(Cursor::new(source))
        .with_guessed_format()
        .map_err(|e| PreviewError(e.to_string()))?;
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    reader.limits(limits);
    let image = reader.decode().map_err(|e| PreviewError(e.to_string()))?;
    let side = size.pixels();
    let scaled = if image.width() > side || image.height() > side {
        image.thumbnail(side, side)
    } else {
        image
    };
    // JPEG has no alpha; the lossless WebP and PNG encoders take 8-bit RGBA.
    let ready = match format {
        PreviewFormat::Jpeg => DynamicImage::ImageRgb8(scaled.to_rgb8()),
        _ => DynamicImage::ImageRgba8(scaled.to_rgba8()),
    };
    let mut out = Cursor::new(Vec::new());
    ready
        .write_to(&mut out, format.image_format())
        .map_err(|e| PreviewError(e.to_string()))?;
    Ok(out.into_inner())
}

/// An image's width and height, read from its header.
pub fn dimensions(source: &[u8]) -> Option<(u32, u32)> {
    ImageReader::new(Cursor::new(source))
        .with_guessed_format()
        .ok()?
        .into_dimensions()
        .ok()
}

/// One generation at a time per preview path (concurrent first requests wait for it).
#[derive(Debug, Clone, Default)]
pub struct InFlight {
    locks: Arc<std::sync::Mutex<HashMap<String, Arc<Mutex<()>>>>>,
}

impl InFlight {
    /// The lock of `path`.
    pub fn lock_for(&self, path: &str) -> Arc<Mutex<()>> {
        let mut locks = self
            .locks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Forget locks nobody holds (the map stays as small as the work in progress).
        locks.retain(|_, lock| Arc::strong_count(lock) > 1);
        locks.entry(path.to_owned()).or_default().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(width: u32, height: u32) -> Vec<u8> {
        let image = image::RgbaImage::from_fn(width, height, |x, y| {
            image::Rgba([(x % 256) as u8, (y % 256) as u8, 90, 255])
        });
        let mut out = Cursor::new(Vec::new());
        DynamicImage::ImageRgba8(image)
            .write_to(&mut out, ImageFormat::Png)
            .unwrap();
        out.into_inner()
    }

    #[test]
    fn previews_fit_the_size_keep_the_aspect_and_never_grow() {
        let source = png(800, 400);
        for format in [PreviewFormat::Webp, PreviewFormat::Jpeg, PreviewFormat::Png] {
            let out = render(&source, PreviewSize::Small, format).unwrap();
            let decoded = image::load_from_memory(&out).unwrap();
            assert_eq!((decoded.width(), decoded.height()), (160, 80), "{format:?}");
            assert_eq!(
                image::guess_format(&out).unwrap(),
                format.image_format(),
                "{format:?}"
            );
        }
        let small = png(100, 50);
        let out = render(&small, PreviewSize::Large, PreviewFormat::Png).unwrap();
        let decoded = image::load_from_memory(&out).unwrap();
        assert_eq!((decoded.width(), decoded.height()), (100, 50));
    }

    #[test]
    fn broken_images_are_refused_not_panicked_on() {
        let mut broken = png(50, 50);
        broken.truncate(60);
        assert!(render(&broken, PreviewSize::Small, PreviewFormat::Png).is_err());
        assert!(render(b"not an image", PreviewSize::Small, PreviewFormat::Png).is_err());
    }
}
