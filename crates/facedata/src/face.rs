//! The synthetic face model: what a face is ([`Traits`] per identity, [`Look`] per image), how it
//! is labelled with the 40 CelebA attributes, and how it is drawn anti-aliased with tiny-skia.
//!
//! Geometry lives in "face space": pixels of the 160×160 centre crop that training takes, origin
//! at the crop centre, y down. [`Canvas`] maps face space onto a CelebA 178×218 image (crop at
//! rows 29..188, cols 9..168) or a facenet-aligned 182×182 image (crop offset 11), so the whole
//! face always sits inside the crop. The mouth is drawn large enough that a smile (corners up,
//! lips parted over teeth) is plain at 64×64 after the crop.
//!
//! Labels are derived from the same values the renderer draws with ([`labels`]), so every
//! rendered attribute is labelled truthfully; attributes that are not drawn (Attractive) are a
//! fixed function of the drawn ones. Randomness comes in through the caller's RNG only, and all
//! transcendental maths goes through `libm`, so a face's pixels depend on nothing but its RNG.
//! File layout and parallelism are `synth.rs`'s business.

use rand::Rng;
use tiny_skia::{
    Color, FillRule, GradientStop, LineCap, LineJoin, LinearGradient, Mask, Paint, Path,
    PathBuilder, Pixmap, Point, RadialGradient, Shader, SpreadMode, Stroke, Transform,
};

use crate::celeba::CELEBA_ATTRIBUTES;

/// An RGB colour with components in 0..=1.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rgb(pub f32, pub f32, pub f32);

impl Rgb {
    const fn u8(r: u8, g: u8, b: u8) -> Rgb {
        Rgb(r as f32 / 255.0, g as f32 / 255.0, b as f32 / 255.0)
    }
    fn scale(self, k: f32) -> Rgb {
        Rgb(
            (self.0 * k).min(1.0),
            (self.1 * k).min(1.0),
            (self.2 * k).min(1.0),
        )
    }
    fn mix(self, o: Rgb, t: f32) -> Rgb {
        Rgb(
            self.0 + (o.0 - self.0) * t,
            self.1 + (o.1 - self.1) * t,
            self.2 + (o.2 - self.2) * t,
        )
    }
    fn color(self, alpha: f32) -> Color {
        Color::from_rgba(
            self.0.clamp(0.0, 1.0),
            self.1.clamp(0.0, 1.0),
            self.2.clamp(0.0, 1.0),
            alpha.clamp(0.0, 1.0),
        )
        .unwrap_or(Color::BLACK)
    }
}

const WHITE: Rgb = Rgb(1.0, 1.0, 1.0);
const BLACK: Rgb = Rgb(0.0, 0.0, 0.0);

/// Skin tones from light to dark; a face's tone is interpolated along this ramp.
const SKIN_RAMP: [Rgb; 5] = [
    Rgb::u8(250, 222, 200),
    Rgb::u8(233, 190, 160),
    Rgb::u8(200, 148, 112),
    Rgb::u8(145, 100, 72),
    Rgb::u8(95, 64, 46),
];
const PALE_SKIN: Rgb = Rgb::u8(253, 236, 226);

/// Hair colours, each labelled by at most one CelebA hair-colour attribute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HairColor {
    Black,
    Brown,
    Blond,
    Gray,
    /// Auburn/red: real CelebA has no attribute for it.
    Red,
}

impl HairColor {
    fn rgb(self) -> Rgb {
        match self {
            HairColor::Black => Rgb::u8(28, 22, 20),
            HairColor::Brown => Rgb::u8(104, 66, 38),
            HairColor::Blond => Rgb::u8(226, 192, 118),
            HairColor::Gray => Rgb::u8(172, 170, 168),
            HairColor::Red => Rgb::u8(150, 62, 30),
        }
    }
}

/// Hair style of an identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HairStyle {
    /// Short cap over the skull.
    Short,
    /// Shoulder-length hair framing the face.
    Long,
    /// No hair on top (a fringe of hair at the sides).
    Bald,
}

/// Facial hair of an identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Beard {
    None,
    /// Stubble shadow over jaw and upper lip (5_o_Clock_Shadow; still No_Beard).
    Stubble,
    Mustache,
    /// Chin patch plus mustache.
    Goatee,
    /// Along the jaw and chin, with mustache.
    Full,
}

/// Stable per-identity traits.
#[derive(Clone, Debug, PartialEq)]
pub struct Traits {
    pub male: bool,
    pub young: bool,
    pub skin: Rgb,
    pub pale: bool,
    /// Face half-width and half-height in face-space pixels.
    pub face_w: f32,
    pub face_h: f32,
    /// Superellipse exponent of the jaw: 2 oval … 3 square.
    pub jaw: f32,
    pub chubby: bool,
    pub double_chin: bool,
    pub oval: bool,
    /// Horizontal distance of each eye from the midline.
    pub eye_spacing: f32,
    pub eye_w: f32,
    pub narrow_eyes: bool,
    pub iris: Rgb,
    pub bushy_brows: bool,
    pub arched_brows: bool,
    pub big_nose: bool,
    pub pointy_nose: bool,
    pub big_lips: bool,
    pub hair_color: HairColor,
    pub hair_style: HairStyle,
    pub wavy: bool,
    pub bangs: bool,
    pub receding: bool,
    pub beard: Beard,
    pub sideburns: bool,
    pub high_cheekbones: bool,
    pub bags: bool,
    /// Propensities for accessories that come and go between images.
    pub p_glasses: f32,
    pub p_earrings: f32,
    pub p_makeup: f32,
    pub p_lipstick: f32,
    pub p_necklace: f32,
    pub p_necktie: f32,
    pub clothes: Rgb,
}

impl Traits {
    /// Draws an identity.
    pub fn sample<R: Rng>(rng: &mut R) -> Traits {
        let male = rng.gen_bool(0.45);
        let young = rng.gen_bool(0.75);
        let pale = rng.gen_bool(0.1);
        let skin = if pale {
            PALE_SKIN
        } else {
            let t: f32 = rng.gen_range(0.1..1.0f32);
            let t = t * t; // more light-to-medium tones, as in CelebA
            let pos = t * 4.0;
            let i = (pos as usize).min(3);
            SKIN_RAMP[i].mix(SKIN_RAMP[i + 1], pos - i as f32)
        };
        let chubby = rng.gen_bool(if young { 0.07 } else { 0.18 });
        let double_chin = rng.gen_bool(match (chubby, young) {
            (true, _) => 0.6,
            (false, false) => 0.15,
            (false, true) => 0.02,
        });
        let oval = !chubby && rng.gen_bool(if male { 0.2 } else { 0.45 });
        let mut face_w = if male { 41.0 } else { 38.0 } + rng.gen_range(-2.0..2.0f32);
        let mut face_h = 55.0 + rng.gen_range(-2.0..2.0f32);
        let mut jaw = if male { 2.6 } else { 2.15 } + rng.gen_range(-0.15..0.25f32);
        if chubby {
            face_w += 6.0;
            jaw += 0.3;
        }
        if oval {
            face_w -= 2.5;
            face_h += 3.0;
            jaw = 1.9;
        }
        let hair_color = if !young && rng.gen_bool(0.55) {
            HairColor::Gray
        } else {
            let r: f32 = rng.gen();
            let blond = if male { 0.12 } else { 0.3 };
            if r < 0.34 {
                HairColor::Black
            } else if r < 0.34 + 0.34 {
                HairColor::Brown
            } else if r < 0.68 + blond {
                HairColor::Blond
            } else {
                HairColor::Red
            }
        };
        let bald = male && rng.gen_bool(if young { 0.04 } else { 0.3 });
        let hair_style = if bald {
            HairStyle::Bald
        } else if rng.gen_bool(if male { 0.1 } else { 0.85 }) {
            HairStyle::Long
        } else {
            HairStyle::Short
        };
        let wavy = hair_style != HairStyle::Bald && rng.gen_bool(0.35);
        let bangs = hair_style != HairStyle::Bald && rng.gen_bool(if male { 0.1 } else { 0.35 });
        let receding = male && !bald && !bangs && rng.gen_bool(if young { 0.1 } else { 0.45 });
        let beard = if !male {
            Beard::None
        } else {
            let r: f32 = rng.gen();
            match r {
                r if r < 0.5 => Beard::None,
                r if r < 0.65 => Beard::Stubble,
                r if r < 0.73 => Beard::Mustache,
                r if r < 0.86 => Beard::Goatee,
                _ => Beard::Full,
            }
        };
        let eye_hue: f32 = rng.gen();
        let iris = if eye_hue < 0.55 {
            Rgb::u8(80, 50, 30)
        } else if eye_hue < 0.75 {
            Rgb::u8(30, 24, 20)
        } else if eye_hue < 0.9 {
            Rgb::u8(70, 110, 160)
        } else {
            Rgb::u8(80, 120, 80)
        };
        let clothes = Rgb(
            rng.gen_range(0.1..0.9),
            rng.gen_range(0.1..0.9),
            rng.gen_range(0.1..0.9),
        );
        Traits {
            male,
            young,
            skin,
            pale,
            face_w,
            face_h,
            jaw,
            chubby,
            double_chin,
            oval,
            eye_spacing: rng.gen_range(15.0..19.0),
            eye_w: rng.gen_range(6.5..8.0),
            narrow_eyes: rng.gen_bool(0.12),
            iris,
            bushy_brows: rng.gen_bool(if male { 0.25 } else { 0.1 }),
            arched_brows: rng.gen_bool(if male { 0.1 } else { 0.45 }),
            big_nose: rng.gen_bool(if male { 0.3 } else { 0.12 }),
            pointy_nose: rng.gen_bool(0.25),
            big_lips: rng.gen_bool(if male { 0.12 } else { 0.3 }),
            hair_color,
            hair_style,
            wavy,
            bangs,
            receding,
            beard,
            sideburns: male
                && hair_style == HairStyle::Short
                && beard != Beard::Full
                && rng.gen_bool(0.3),
            high_cheekbones: rng.gen_bool(0.3),
            bags: rng.gen_bool(if young { 0.12 } else { 0.5 }),
            p_glasses: if rng.gen_bool(if young { 0.08 } else { 0.25 }) {
                0.85
            } else {
                0.0
            },
            p_earrings: if !male && rng.gen_bool(0.45) {
                0.8
            } else {
                0.0
            },
            p_makeup: if !male && rng.gen_bool(if young { 0.55 } else { 0.3 }) {
                0.8
            } else {
                0.0
            },
            p_lipstick: if !male { 0.35 } else { 0.0 },
            p_necklace: if !male && rng.gen_bool(0.3) { 0.7 } else { 0.0 },
            p_necktie: if male && rng.gen_bool(0.2) { 0.75 } else { 0.0 },
            clothes,
        }
    }
}

/// Per-image variation: expression, pose, lighting, accessories of the day.
#[derive(Clone, Debug, PartialEq)]
pub struct Look {
    /// Smile strength: below 0.3 not smiling (slightly negative is a faint frown), up to 1.
    pub smile: f32,
    /// Lip gap in face-space pixels (0 closed).
    pub mouth_gap: f32,
    pub rotate_deg: f32,
    pub shift: (f32, f32),
    pub scale: f32,
    /// Horizontal shift of eyes, nose and mouth (a hint of head turn).
    pub yaw: f32,
    /// Direction the light comes from (radians) and how strong the shading is (0..1).
    pub light_angle: f32,
    pub light_strength: f32,
    pub background: (Rgb, Rgb),
    pub glasses: bool,
    pub earrings: bool,
    pub heavy_makeup: bool,
    pub lipstick: bool,
    pub necklace: bool,
    pub necktie: bool,
    pub hat: Option<Rgb>,
    pub rosy_cheeks: bool,
    pub blurry: bool,
}

/// Smile strength at and above which an image is labelled Smiling.
pub const SMILE_THRESHOLD: f32 = 0.3;
/// Lip gap (face-space pixels) at and above which the mouth is labelled open.
pub const OPEN_THRESHOLD: f32 = 2.5;

impl Look {
    /// Draws one image's variation. Smiling is a fair coin independent of the identity, with
    /// strength uniform in 0.35..1 when smiling, so attribute arithmetic finds a clean direction.
    pub fn sample<R: Rng>(rng: &mut R, t: &Traits) -> Look {
        let smiling = rng.gen_bool(0.5);
        let smile = if smiling {
            rng.gen_range(0.35..1.0f32)
        } else {
            rng.gen_range(-0.2..0.15f32)
        };
        let mouth_gap = if smiling {
            if smile > 0.5 && rng.gen_bool(0.8) {
                rng.gen_range(3.0..5.0f32) + 7.0 * (smile - 0.5)
            } else {
                0.0
            }
        } else if rng.gen_bool(0.2) {
            rng.gen_range(3.0..5.5f32)
        } else {
            0.0
        };
        let heavy_makeup = rng.gen_bool(t.p_makeup as f64);
        let lipstick = heavy_makeup || rng.gen_bool(t.p_lipstick as f64);
        let bg = |rng: &mut R| {
            Rgb(
                rng.gen_range(0.15..0.95),
                rng.gen_range(0.15..0.95),
                rng.gen_range(0.15..0.95),
            )
        };
        let background = (bg(rng), bg(rng));
        Look {
            smile,
            mouth_gap,
            rotate_deg: rng.gen_range(-7.0..7.0),
            shift: (rng.gen_range(-4.0..4.0), rng.gen_range(-4.0..4.0)),
            scale: rng.gen_range(0.95..1.05),
            yaw: rng.gen_range(-3.5..3.5),
            light_angle: rng.gen_range(0.0..std::f32::consts::TAU),
            light_strength: rng.gen_range(0.05..0.45),
            background,
            glasses: rng.gen_bool(t.p_glasses as f64),
            earrings: rng.gen_bool(t.p_earrings as f64),
            heavy_makeup,
            lipstick,
            necklace: rng.gen_bool(t.p_necklace as f64),
            necktie: rng.gen_bool(t.p_necktie as f64),
            hat: rng.gen_bool(0.07).then(|| {
                Rgb(
                    rng.gen_range(0.05..0.9),
                    rng.gen_range(0.05..0.9),
                    rng.gen_range(0.05..0.9),
                )
            }),
            rosy_cheeks: rng.gen_bool(if heavy_makeup { 0.35 } else { 0.06 }),
            blurry: rng.gen_bool(0.04),
        }
    }

    fn smiling(&self) -> bool {
        self.smile >= SMILE_THRESHOLD
    }

    /// Cheeks lifted by a broad smile count as High_Cheekbones, as CelebA annotators saw them.
    fn cheekbones(&self, t: &Traits) -> bool {
        t.high_cheekbones || self.smile >= 0.6
    }
}

/// Attributes this renderer draws (so their labels are truthful), by CelebA name.
pub const RENDERED_ATTRIBUTES: [&str; 38] = [
    "5_o_Clock_Shadow",
    "Arched_Eyebrows",
    "Bags_Under_Eyes",
    "Bald",
    "Bangs",
    "Big_Lips",
    "Big_Nose",
    "Black_Hair",
    "Blond_Hair",
    "Blurry",
    "Brown_Hair",
    "Bushy_Eyebrows",
    "Chubby",
    "Double_Chin",
    "Eyeglasses",
    "Goatee",
    "Gray_Hair",
    "Heavy_Makeup",
    "High_Cheekbones",
    "Male",
    "Mouth_Slightly_Open",
    "Mustache",
    "Narrow_Eyes",
    "No_Beard",
    "Oval_Face",
    "Pale_Skin",
    "Pointy_Nose",
    "Receding_Hairline",
    "Rosy_Cheeks",
    "Sideburns",
    "Smiling",
    "Straight_Hair",
    "Wavy_Hair",
    "Wearing_Earrings",
    "Wearing_Hat",
    "Wearing_Lipstick",
    "Wearing_Necklace",
    "Wearing_Necktie",
];

/// The 40 CelebA labels (±1, [`CELEBA_ATTRIBUTES`] order) of a face. `Young` follows the
/// identity (drawn as wrinkles when false); `Attractive` is a fixed function of drawn attributes.
pub fn labels(t: &Traits, l: &Look) -> [i8; 40] {
    let has_hair = t.hair_style != HairStyle::Bald;
    let mustache = matches!(t.beard, Beard::Mustache | Beard::Goatee | Beard::Full);
    let attractive =
        t.young && !t.chubby && !t.bags && !l.blurry && (l.heavy_makeup || l.smiling());
    let value = |name: &str| -> bool {
        match name {
            "5_o_Clock_Shadow" => t.beard == Beard::Stubble,
            "Arched_Eyebrows" => t.arched_brows,
            "Attractive" => attractive,
            "Bags_Under_Eyes" => t.bags,
            "Bald" => !has_hair,
            "Bangs" => has_hair && t.bangs,
            "Big_Lips" => t.big_lips,
            "Big_Nose" => t.big_nose,
            "Black_Hair" => has_hair && t.hair_color == HairColor::Black,
            "Blond_Hair" => has_hair && t.hair_color == HairColor::Blond,
            "Blurry" => l.blurry,
            "Brown_Hair" => has_hair && t.hair_color == HairColor::Brown,
            "Bushy_Eyebrows" => t.bushy_brows,
            "Chubby" => t.chubby,
            "Double_Chin" => t.double_chin,
            "Eyeglasses" => l.glasses,
            "Goatee" => t.beard == Beard::Goatee,
            "Gray_Hair" => has_hair && t.hair_color == HairColor::Gray,
            "Heavy_Makeup" => l.heavy_makeup,
            "High_Cheekbones" => l.cheekbones(t),
            "Male" => t.male,
            "Mouth_Slightly_Open" => l.mouth_gap >= OPEN_THRESHOLD,
            "Mustache" => mustache,
            "Narrow_Eyes" => t.narrow_eyes,
            "No_Beard" => !matches!(t.beard, Beard::Mustache | Beard::Goatee | Beard::Full),
            "Oval_Face" => t.oval,
            "Pale_Skin" => t.pale,
            "Pointy_Nose" => t.pointy_nose,
            "Receding_Hairline" => t.receding,
            "Rosy_Cheeks" => l.rosy_cheeks,
            "Sideburns" => t.sideburns,
            "Smiling" => l.smiling(),
            "Straight_Hair" => has_hair && !t.wavy,
            "Wavy_Hair" => has_hair && t.wavy,
            "Wearing_Earrings" => l.earrings,
            "Wearing_Hat" => l.hat.is_some(),
            "Wearing_Lipstick" => l.lipstick,
            "Wearing_Necklace" => l.necklace,
            "Wearing_Necktie" => l.necktie,
            "Young" => t.young,
            _ => false,
        }
    };
    let mut out = [-1i8; 40];
    for (o, name) in out.iter_mut().zip(CELEBA_ATTRIBUTES) {
        if value(name) {
            *o = 1;
        }
    }
    out
}

/// The image a face is drawn into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Canvas {
    /// `img_align_celeba`: 178 wide, 218 high; the 160 crop is cols 9..168, rows 29..188.
    CelebA,
    /// facenet's MTCNN alignment output (`image_size` 182, margin 44): the crop is at offset 11.
    Aligned182,
}

impl Canvas {
    /// (width, height) in pixels.
    pub fn size(self) -> (u32, u32) {
        match self {
            Canvas::CelebA => (178, 218),
            Canvas::Aligned182 => (182, 182),
        }
    }

    /// Face-space origin (centre of the 160 crop) in image coordinates, and face-space scale.
    /// MTCNN crops are tighter than CelebA's alignment, so faces come out a little larger.
    fn placement(self) -> (f32, f32, f32) {
        match self {
            Canvas::CelebA => (89.0, 109.0, 1.1),
            Canvas::Aligned182 => (91.0, 91.0, 1.18),
        }
    }
}

/// Renders a face into an RGB8 buffer (row-major, `w*h*3`).
pub fn render(t: &Traits, l: &Look, canvas: Canvas) -> image::RgbImage {
    let (w, h) = canvas.size();
    let (cx, cy, s) = canvas.placement();
    let mut pixmap = match Pixmap::new(w, h) {
        Some(p) => p,
        None => return image::RgbImage::new(w, h),
    };
    let (sin, cos) = (
        libm::sinf(l.rotate_deg.to_radians()),
        libm::cosf(l.rotate_deg.to_radians()),
    );
    let k = s * l.scale;
    // image = translate(centre + shift) · scale(k) · rotate(angle) · face
    let ts = Transform::from_row(
        k * cos,
        k * sin,
        -k * sin,
        k * cos,
        cx + l.shift.0,
        cy + l.shift.1,
    );
    let mut p = Painter {
        pixmap: &mut pixmap,
        ts,
    };
    draw_face(&mut p, t, l, (w as f32, h as f32));
    let mut img = image::RgbImage::new(w, h);
    for (dst, src) in img.pixels_mut().zip(pixmap.pixels()) {
        // Every image starts from an opaque background, so premultiplied == straight colour.
        *dst = image::Rgb([src.red(), src.green(), src.blue()]);
    }
    if l.blurry {
        img = image::imageops::fast_blur(&img, 1.6);
    }
    img
}

/// A pixmap plus the face-space → image transform.
struct Painter<'a> {
    pixmap: &'a mut Pixmap,
    ts: Transform,
}

impl Painter<'_> {
    fn fill(&mut self, path: &Option<Path>, c: Rgb, alpha: f32) {
        self.fill_shader(path, Shader::SolidColor(c.color(alpha)));
    }

    fn fill_shader(&mut self, path: &Option<Path>, shader: Shader) {
        if let Some(path) = path {
            let paint = Paint {
                shader,
                anti_alias: true,
                ..Paint::default()
            };
            self.pixmap
                .fill_path(path, &paint, FillRule::Winding, self.ts, None);
        }
    }

    fn fill_masked(&mut self, path: &Option<Path>, c: Rgb, alpha: f32, mask: &Mask) {
        if let Some(path) = path {
            let mut paint = Paint::default();
            paint.set_color(c.color(alpha));
            self.pixmap
                .fill_path(path, &paint, FillRule::Winding, self.ts, Some(mask));
        }
    }

    fn stroke(&mut self, path: &Option<Path>, c: Rgb, alpha: f32, width: f32) {
        if let Some(path) = path {
            let mut paint = Paint::default();
            paint.set_color(c.color(alpha));
            let stroke = Stroke {
                width,
                line_cap: LineCap::Round,
                line_join: LineJoin::Round,
                ..Stroke::default()
            };
            self.pixmap
                .stroke_path(path, &paint, &stroke, self.ts, None);
        }
    }

    fn mask_of(&self, path: &Option<Path>) -> Option<Mask> {
        let path = path.as_ref()?;
        let mut m = Mask::new(self.pixmap.width(), self.pixmap.height())?;
        m.fill_path(path, FillRule::Winding, true, self.ts);
        Some(m)
    }
}

fn ellipse(cx: f32, cy: f32, rx: f32, ry: f32) -> Option<Path> {
    tiny_skia::Rect::from_ltrb(cx - rx, cy - ry, cx + rx, cy + ry).and_then(PathBuilder::from_oval)
}

fn polygon(points: &[(f32, f32)]) -> Option<Path> {
    let mut pb = PathBuilder::new();
    let (first, rest) = points.split_first()?;
    pb.move_to(first.0, first.1);
    for p in rest {
        pb.line_to(p.0, p.1);
    }
    pb.close();
    pb.finish()
}

fn polyline(points: &[(f32, f32)]) -> Option<Path> {
    let mut pb = PathBuilder::new();
    let (first, rest) = points.split_first()?;
    pb.move_to(first.0, first.1);
    for p in rest {
        pb.line_to(p.0, p.1);
    }
    pb.finish()
}

fn quad(a: (f32, f32), c: (f32, f32), b: (f32, f32)) -> Option<Path> {
    let mut pb = PathBuilder::new();
    pb.move_to(a.0, a.1);
    pb.quad_to(c.0, c.1, b.0, b.1);
    pb.finish()
}

/// Point on a quadratic Bézier.
fn qpoint(a: (f32, f32), c: (f32, f32), b: (f32, f32), t: f32) -> (f32, f32) {
    let u = 1.0 - t;
    (
        u * u * a.0 + 2.0 * u * t * c.0 + t * t * b.0,
        u * u * a.1 + 2.0 * u * t * c.1 + t * t * b.1,
    )
}

/// Signed power keeping the sign: the superellipse building block.
fn spow(v: f32, e: f32) -> f32 {
    libm::copysignf(libm::powf(libm::fabsf(v), e), v)
}

/// Face-space centre of the face outline.
const FACE_CY: f32 = -2.0;

/// Outline point at angle `a` (0 = top, clockwise) of the face; the lower half is a
/// superellipse with exponent `jaw` so the jaw goes from oval to square.
fn face_point(t: &Traits, a: f32, grow: f32) -> (f32, f32) {
    let (s, c) = (libm::sinf(a), libm::cosf(a));
    let lower = c < 0.0;
    let e = if lower { 2.0 / t.jaw } else { 2.0 / 2.2 };
    let x = (t.face_w + grow) * spow(s, e);
    let y = FACE_CY - (t.face_h + grow) * spow(c, e);
    (x, y)
}

fn face_outline(t: &Traits, grow: f32) -> Vec<(f32, f32)> {
    (0..72)
        .map(|i| face_point(t, i as f32 * std::f32::consts::TAU / 72.0, grow))
        .collect()
}

fn draw_face(p: &mut Painter, t: &Traits, l: &Look, size: (f32, f32)) {
    let f = Face::new(t, l);
    draw_background(p, &f, size);
    draw_shoulders(p, &f);
    draw_long_hair(p, &f);
    draw_neck(p, &f);
    draw_collar(p, &f);
    draw_ears(p, &f);
    let face_mask = draw_skin(p, &f);
    draw_cheeks(p, &f, face_mask.as_ref());
    draw_full_beard(p, &f, face_mask.as_ref());
    draw_eyes(p, &f);
    draw_eyebrows(p, &f);
    draw_nose(p, &f);
    draw_mouth(p, &f);
    draw_age_lines(p, &f);
    draw_top_hair(p, &f);
    draw_hat(p, &f);
    draw_glasses(p, &f);
    draw_lighting(p, &f, size);
}

/// Face-space heights of the eyes' centre line and of the mouth.
const EYE_Y: f32 = -8.0;
const MOUTH_Y: f32 = 29.0;

/// What several parts of one face are drawn from, worked out once.
#[derive(Clone, Copy)]
struct Face<'a> {
    t: &'a Traits,
    l: &'a Look,
    hair: Rgb,
    skin: Rgb,
    /// Half-width of the face.
    fw: f32,
    neck_w: f32,
    /// Features shift sideways with the head turn.
    fx: f32,
    /// The smile, 0 for a frown (which only lowers the mouth's corners).
    smile: f32,
    /// Cheekbones drawn.
    cheek: bool,
    /// Direction of the light (cos, sin of `light_angle`).
    light: (f32, f32),
    nose_w: f32,
    /// Height of the nose tip; the moustache and the folds start below it.
    nose_tip: f32,
    /// Horizontal centre of the nose.
    nx: f32,
    /// Half-width of the mouth.
    mouth_w: f32,
}

impl<'a> Face<'a> {
    fn new(t: &'a Traits, l: &'a Look) -> Face<'a> {
        let smile = l.smile.max(0.0);
        Face {
            t,
            l,
            hair: t.hair_color.rgb(),
            skin: t.skin,
            fw: t.face_w,
            neck_w: t.face_w * 0.45,
            fx: l.yaw,
            smile,
            cheek: l.cheekbones(t),
            light: (libm::cosf(l.light_angle), libm::sinf(l.light_angle)),
            nose_w: if t.big_nose { 6.5 } else { 4.5 },
            nose_tip: if t.pointy_nose { 15.0 } else { 13.0 },
            nx: l.yaw * 1.2,
            mouth_w: 12.5 + 4.5 * smile + if t.big_lips { 1.0 } else { 0.0 },
        }
    }
}

/// The background: a two-colour gradient over the whole image (drawn without the face transform).
fn draw_background(p: &mut Painter, f: &Face, (img_w, img_h): (f32, f32)) {
    let l = f.l;
    if let (Some(rect), Some(shader)) = (
        tiny_skia::Rect::from_xywh(0.0, 0.0, img_w, img_h),
        LinearGradient::new(
            Point::from_xy(0.0, 0.0),
            Point::from_xy(img_w * 0.3, img_h),
            vec![
                GradientStop::new(0.0, l.background.0.color(1.0)),
                GradientStop::new(1.0, l.background.1.color(1.0)),
            ],
            SpreadMode::Pad,
            Transform::identity(),
        ),
    ) {
        let paint = Paint {
            shader,
            ..Paint::default()
        };
        p.pixmap
            .fill_rect(rect, &paint, Transform::identity(), None);
    }
}

/// Shoulders and clothes.
fn draw_shoulders(p: &mut Painter, f: &Face) {
    let Face { t, .. } = *f;
    let shoulders = polygon(&[
        (-120.0, 160.0),
        (-110.0, 96.0),
        (-85.0, 76.0),
        (-30.0, 64.0),
        (30.0, 64.0),
        (85.0, 76.0),
        (110.0, 96.0),
        (120.0, 160.0),
    ]);
    p.fill(&shoulders, t.clothes, 1.0);
}

/// Long hair behind the head.
fn draw_long_hair(p: &mut Painter, f: &Face) {
    let Face { t, hair, fw, .. } = *f;
    if t.hair_style == HairStyle::Long {
        let mut pts = Vec::new();
        let n = 24;
        for i in 0..=n {
            // Right side from the crown down to the shoulders.
            let v = i as f32 / n as f32;
            let y = -66.0 + v * 136.0;
            let mut x = fw + 8.0 + 10.0 * libm::sinf(v * 2.4);
            if t.wavy {
                x += 3.5 * libm::sinf(v * 20.0);
            }
            if v < 0.2 {
                x *= libm::sqrtf(v / 0.2).max(0.2);
            }
            pts.push((x, y));
        }
        let left: Vec<(f32, f32)> = pts.iter().rev().map(|(x, y)| (-x, *y)).collect();
        pts.extend(left);
        p.fill(&polygon(&pts), hair.scale(0.85), 1.0);
    }
}

/// Neck with a shadow under the chin.
fn draw_neck(p: &mut Painter, f: &Face) {
    let Face { skin, neck_w, .. } = *f;
    let neck = polygon(&[
        (-neck_w, 20.0),
        (neck_w, 20.0),
        (neck_w + 3.0, 70.0),
        (-neck_w - 3.0, 70.0),
    ]);
    p.fill(&neck, skin.scale(0.86), 1.0);
    p.fill(
        &ellipse(0.0, 58.0, neck_w + 3.0, 7.0),
        skin.scale(0.78),
        0.5,
    );
}

/// Collar and tie, necklace.
fn draw_collar(p: &mut Painter, f: &Face) {
    let Face { t, l, neck_w, .. } = *f;
    if l.necktie {
        p.fill(
            &polygon(&[
                (-neck_w - 4.0, 64.0),
                (0.0, 76.0),
                (-4.0, 84.0),
                (-neck_w - 10.0, 70.0),
            ]),
            WHITE,
            1.0,
        );
        p.fill(
            &polygon(&[
                (neck_w + 4.0, 64.0),
                (0.0, 76.0),
                (4.0, 84.0),
                (neck_w + 10.0, 70.0),
            ]),
            WHITE,
            1.0,
        );
        let tie = Rgb(0.6 - t.clothes.0 * 0.5, 0.1, 0.35 + t.clothes.2 * 0.3);
        p.fill(
            &polygon(&[(-4.5, 72.0), (4.5, 72.0), (3.0, 79.0), (-3.0, 79.0)]),
            tie,
            1.0,
        );
        p.fill(
            &polygon(&[
                (-3.0, 79.0),
                (3.0, 79.0),
                (6.0, 100.0),
                (0.0, 106.0),
                (-6.0, 100.0),
            ]),
            tie,
            1.0,
        );
    }
    if l.necklace {
        let chain = quad((-neck_w - 2.0, 56.0), (0.0, 82.0), (neck_w + 2.0, 56.0));
        p.stroke(&chain, Rgb::u8(230, 200, 90), 1.0, 1.8);
        let pend = qpoint(
            (-neck_w - 2.0, 56.0),
            (0.0, 82.0),
            (neck_w + 2.0, 56.0),
            0.5,
        );
        p.fill(
            &ellipse(pend.0, pend.1 + 2.0, 2.6, 3.2),
            Rgb::u8(240, 240, 250),
            1.0,
        );
    }
}

/// Ears and earrings.
fn draw_ears(p: &mut Painter, f: &Face) {
    let Face { l, skin, fw, .. } = *f;
    for side in [-1.0f32, 1.0] {
        let ex = side * (fw - 1.0);
        p.fill(&ellipse(ex, 2.0, 5.5, 10.0), skin.scale(0.92), 1.0);
        p.fill(
            &ellipse(ex + side * 1.2, 2.0, 2.5, 6.0),
            skin.scale(0.75),
            0.6,
        );
        if l.earrings {
            let gold = Rgb::u8(235, 195, 70);
            p.stroke(&ellipse(ex + side * 0.5, 16.0, 2.6, 3.4), gold, 1.0, 1.6);
            p.fill(&ellipse(ex + side * 0.5, 13.0, 1.5, 1.5), gold, 1.0);
        }
    }
}

/// The face with directional shading (light from `light_angle`), and a double chin; returns the
/// face's mask for what is drawn on the skin only.
fn draw_skin(p: &mut Painter, f: &Face) -> Option<Mask> {
    let Face {
        t,
        l,
        skin,
        fw,
        light: (lx, ly),
        ..
    } = *f;
    let outline = face_outline(t, 0.0);
    let face_path = polygon(&outline);
    let lit = skin.scale(1.0 + 0.12 * l.light_strength);
    let shade = skin.scale(1.0 - 0.35 * l.light_strength);
    if let Some(shader) = RadialGradient::new(
        Point::from_xy(lx * fw * 0.35, FACE_CY + ly * fw * 0.35),
        0.0,
        Point::from_xy(0.0, FACE_CY),
        t.face_h * 1.25,
        vec![
            GradientStop::new(0.0, lit.color(1.0)),
            GradientStop::new(0.55, skin.color(1.0)),
            GradientStop::new(1.0, shade.color(1.0)),
        ],
        SpreadMode::Pad,
        Transform::identity(),
    ) {
        p.fill_shader(&face_path, shader);
    } else {
        p.fill(&face_path, skin, 1.0);
    }
    let face_mask = p.mask_of(&face_path);

    if t.double_chin {
        let y = FACE_CY + t.face_h;
        p.stroke(
            &quad((-fw * 0.45, y - 3.0), (0.0, y + 7.0), (fw * 0.45, y - 3.0)),
            skin.scale(0.72),
            0.8,
            1.6,
        );
    }
    face_mask
}

/// Cheeks: blush, cheekbone highlight, smile lines, stubble.
fn draw_cheeks(p: &mut Painter, f: &Face, face_mask: Option<&Mask>) {
    let Face {
        t,
        l,
        skin,
        fw,
        fx,
        smile,
        cheek,
        ..
    } = *f;
    if l.rosy_cheeks {
        for side in [-1.0f32, 1.0] {
            let c = (fx + side * fw * 0.55, 14.0 - 4.0 * smile);
            if let Some(shader) = RadialGradient::new(
                Point::from_xy(c.0, c.1),
                0.0,
                Point::from_xy(c.0, c.1),
                11.0,
                vec![
                    GradientStop::new(0.0, Rgb::u8(235, 80, 90).color(0.6)),
                    GradientStop::new(1.0, Rgb::u8(235, 80, 90).color(0.0)),
                ],
                SpreadMode::Pad,
                Transform::identity(),
            ) {
                p.fill_shader(&ellipse(c.0, c.1, 11.0, 11.0), shader);
            }
        }
    }
    if cheek {
        for side in [-1.0f32, 1.0] {
            let a = (fx + side * fw * 0.78, 2.0 - 3.0 * smile);
            let b = (fx + side * fw * 0.45, 20.0 - 2.0 * smile);
            p.stroke(
                &quad(a, (fx + side * fw * 0.8, 14.0), b),
                skin.scale(0.8),
                0.3,
                1.6,
            );
            p.fill(
                &ellipse(fx + side * fw * 0.55, 7.0 - 3.0 * smile, 7.0, 4.0),
                WHITE,
                0.18,
            );
        }
    }
    if t.beard == Beard::Stubble {
        if let Some(mask) = face_mask {
            let stubble = polygon(&[
                (-fw, 8.0),
                (-fw * 0.35, 19.0),
                (fw * 0.35, 19.0),
                (fw, 8.0),
                (fw, 80.0),
                (-fw, 80.0),
            ]);
            p.fill_masked(&stubble, Rgb::u8(60, 50, 45), 0.35, mask);
        }
    }
}

/// Full beard along the jaw.
fn draw_full_beard(p: &mut Painter, f: &Face, face_mask: Option<&Mask>) {
    let Face { t, hair, fw, .. } = *f;
    if t.beard == Beard::Full {
        if let Some(mask) = face_mask {
            let pts = [
                (-fw - 2.0, -2.0),
                (-fw * 0.72, 8.0),
                (-fw * 0.55, MOUTH_Y + 4.0),
                (0.0, MOUTH_Y + 10.0),
                (fw * 0.55, MOUTH_Y + 4.0),
                (fw * 0.72, 8.0),
                (fw + 2.0, -2.0),
                (fw + 2.0, 90.0),
                (-fw - 2.0, 90.0),
            ];
            p.fill_masked(&polygon(&pts), hair.scale(0.8), 0.95, mask);
        }
        // Beard extends a little below the chin.
        let chin = FACE_CY + t.face_h;
        p.fill(
            &ellipse(0.0, chin - 2.0, fw * 0.42, 8.0),
            hair.scale(0.8),
            0.95,
        );
    }
}

/// Eyes, with makeup and bags.
fn draw_eyes(p: &mut Painter, f: &Face) {
    let Face {
        t,
        l,
        skin,
        fx,
        smile,
        ..
    } = *f;
    let eye_h = if t.narrow_eyes { 2.1 } else { 3.8 } * (1.0 - 0.3 * smile);
    for side in [-1.0f32, 1.0] {
        let ex = fx + side * t.eye_spacing;
        if l.heavy_makeup {
            p.fill(
                &ellipse(ex, EYE_Y - 3.0, t.eye_w + 2.0, eye_h + 4.0),
                Rgb::u8(110, 70, 130),
                0.55,
            );
        }
        if t.bags {
            p.stroke(
                &quad(
                    (ex - t.eye_w * 0.8, EYE_Y + eye_h + 2.5),
                    (ex, EYE_Y + eye_h + 6.0),
                    (ex + t.eye_w * 0.8, EYE_Y + eye_h + 2.5),
                ),
                skin.scale(0.7),
                0.7,
                1.4,
            );
        }
        let eye = {
            let mut pb = PathBuilder::new();
            pb.move_to(ex - t.eye_w, EYE_Y);
            pb.quad_to(ex, EYE_Y - 2.0 * eye_h, ex + t.eye_w, EYE_Y);
            pb.quad_to(ex, EYE_Y + 1.6 * eye_h, ex - t.eye_w, EYE_Y);
            pb.close();
            pb.finish()
        };
        p.fill(&eye, Rgb::u8(245, 245, 240), 1.0);
        if let Some(mask) = p.mask_of(&eye) {
            let ix = ex + l.yaw * 0.3;
            p.fill_masked(&ellipse(ix, EYE_Y - 0.3, 3.4, 3.4), t.iris, 1.0, &mask);
            p.fill_masked(&ellipse(ix, EYE_Y - 0.3, 1.5, 1.5), BLACK, 1.0, &mask);
            p.fill_masked(&ellipse(ix + 1.0, EYE_Y - 1.3, 0.7, 0.7), WHITE, 0.9, &mask);
        }
        let liner = if l.heavy_makeup { 1.8 } else { 1.0 };
        p.stroke(
            &quad(
                (ex - t.eye_w, EYE_Y),
                (ex, EYE_Y - 2.0 * eye_h),
                (ex + t.eye_w, EYE_Y),
            ),
            Rgb::u8(40, 30, 30),
            0.9,
            liner,
        );
    }
}

/// Eyebrows.
fn draw_eyebrows(p: &mut Painter, f: &Face) {
    let Face { t, hair, fx, .. } = *f;
    let brow_y = -19.0 - if t.arched_brows { 1.5 } else { 0.0 };
    let brow_w = if t.bushy_brows { 3.6 } else { 1.9 };
    let brow_c = if t.hair_style == HairStyle::Bald {
        Rgb::u8(70, 55, 45)
    } else {
        hair.scale(0.8)
    };
    for side in [-1.0f32, 1.0] {
        let ex = fx + side * t.eye_spacing;
        let inner = (ex - side * (t.eye_w + 1.0), brow_y + 2.0);
        let outer = (ex + side * (t.eye_w + 2.5), brow_y + 2.5);
        let arch = if t.arched_brows { 7.0 } else { 3.0 };
        let ctrl = (ex + side * 1.5, brow_y + 2.0 - arch);
        p.stroke(&quad(inner, ctrl, outer), brow_c, 1.0, brow_w);
    }
}

/// Nose.
fn draw_nose(p: &mut Painter, f: &Face) {
    let Face {
        t,
        l,
        skin,
        nose_w,
        nose_tip,
        nx,
        ..
    } = *f;
    p.stroke(
        &quad(
            (nx - 2.5, -6.0),
            (nx + 1.0 + l.yaw * 0.3, 4.0),
            (nx + if t.pointy_nose { 2.5 } else { 1.5 }, nose_tip),
        ),
        skin.scale(0.75),
        0.7,
        1.3,
    );
    p.fill(
        &ellipse(nx, nose_tip, nose_w * 0.55, 3.5),
        skin.scale(1.05),
        0.5,
    );
    for side in [-1.0f32, 1.0] {
        p.fill(
            &ellipse(nx + side * nose_w * 0.5, nose_tip + 1.0, 1.6, 1.1),
            skin.scale(0.45),
            0.85,
        );
        p.stroke(
            &quad(
                (nx + side * nose_w * 0.9, nose_tip - 3.0),
                (nx + side * (nose_w + 1.0), nose_tip + 1.0),
                (nx + side * nose_w * 0.5, nose_tip + 2.5),
            ),
            skin.scale(0.7),
            0.7,
            1.1,
        );
    }
}

/// Mouth: corners rise and spread with the smile; lips part over teeth.
fn draw_mouth(p: &mut Painter, f: &Face) {
    let Face {
        t,
        l,
        hair,
        skin,
        fx: mx,
        smile,
        nose_tip,
        mouth_w: mw,
        ..
    } = *f;
    let lift = 7.0 * l.smile; // negative smile = corners slightly down
    let left = (mx - mw, MOUTH_Y - lift);
    let right = (mx + mw, MOUTH_Y - lift);
    let gap = l.mouth_gap;
    // Upper lip line (where the lips meet, or the top of the opening).
    let upper_c = (mx, MOUTH_Y + 0.5 - 0.3 * lift + 2.0 * smile);
    // Lower line of the opening; bows down more with the smile.
    let lower_c = (
        mx,
        upper_c.1 + 2.0 * gap + 3.0 * smile * (gap > 0.0) as i32 as f32,
    );
    let lip = if l.lipstick {
        Rgb::u8(200, 30, 50)
    } else {
        skin.mix(Rgb::u8(180, 80, 80), 0.55)
    };
    let lip_t = if t.big_lips { 1.5 } else { 1.0 };
    if t.beard != Beard::None && t.beard != Beard::Stubble {
        let top = nose_tip + 3.0;
        let must = {
            let mut pb = PathBuilder::new();
            pb.move_to(left.0 - 2.0, left.1 + 2.0);
            pb.quad_to(mx, top - 2.0, right.0 + 2.0, right.1 + 2.0);
            pb.quad_to(mx, top + 5.0, left.0 - 2.0, left.1 + 2.0);
            pb.close();
            pb.finish()
        };
        p.fill(&must, hair.scale(0.75), 1.0);
    }
    // Upper lip body.
    let upper_lip = {
        let mut pb = PathBuilder::new();
        pb.move_to(left.0, left.1);
        pb.quad_to(
            mx - mw * 0.5,
            MOUTH_Y - 3.8 * lip_t - 0.5 * lift,
            mx,
            MOUTH_Y - 2.6 * lip_t - 0.3 * lift + 2.0 * smile,
        );
        pb.quad_to(
            mx + mw * 0.5,
            MOUTH_Y - 3.8 * lip_t - 0.5 * lift,
            right.0,
            right.1,
        );
        pb.quad_to(upper_c.0, upper_c.1, left.0, left.1);
        pb.close();
        pb.finish()
    };
    // Lower lip body below the opening.
    let lower_lip = {
        let mut pb = PathBuilder::new();
        pb.move_to(left.0, left.1);
        pb.quad_to(lower_c.0, lower_c.1, right.0, right.1);
        pb.quad_to(
            lower_c.0,
            lower_c.1 + 7.0 * lip_t + 1.5 * smile,
            left.0,
            left.1,
        );
        pb.close();
        pb.finish()
    };
    if gap > 0.0 {
        let opening = {
            let mut pb = PathBuilder::new();
            pb.move_to(left.0, left.1);
            pb.quad_to(upper_c.0, upper_c.1, right.0, right.1);
            pb.quad_to(lower_c.0, lower_c.1, left.0, left.1);
            pb.close();
            pb.finish()
        };
        p.fill(&opening, Rgb::u8(70, 20, 25), 1.0);
        if smile >= 0.35 {
            if let Some(mask) = p.mask_of(&opening) {
                // Upper teeth: a band under the upper lip line.
                let teeth = {
                    let mut pb = PathBuilder::new();
                    pb.move_to(left.0 - 1.0, left.1 - 1.0);
                    pb.quad_to(upper_c.0, upper_c.1 - 2.0, right.0 + 1.0, right.1 - 1.0);
                    pb.line_to(right.0 + 1.0, right.1 + 1.5);
                    pb.quad_to(
                        upper_c.0,
                        upper_c.1 + 0.55 * (lower_c.1 - upper_c.1) + 1.0,
                        left.0 - 1.0,
                        left.1 + 1.5,
                    );
                    pb.close();
                    pb.finish()
                };
                p.fill_masked(&teeth, Rgb::u8(250, 248, 240), 1.0, &mask);
            }
        }
    }
    p.fill(&lower_lip, lip, 1.0);
    p.fill(&upper_lip, lip.scale(0.9), 1.0);
    p.stroke(&quad(left, upper_c, right), lip.scale(0.55), 0.9, 1.0);
    // Dimples / smile lines at the corners.
    if smile > 0.2 {
        for (side, c) in [(-1.0f32, left), (1.0, right)] {
            p.stroke(
                &quad(
                    (c.0 + side * 2.0, c.1 - 3.0),
                    (c.0 + side * 4.0, c.1),
                    (c.0 + side * 2.0, c.1 + 3.5),
                ),
                skin.scale(0.65),
                0.4 + 0.5 * smile,
                1.3,
            );
        }
    }
    if t.beard == Beard::Goatee {
        let chin = FACE_CY + t.face_h;
        let goatee = {
            let mut pb = PathBuilder::new();
            pb.move_to(mx - 7.0, lower_c.1 + 4.0);
            pb.quad_to(mx, lower_c.1 + 1.0, mx + 7.0, lower_c.1 + 4.0);
            pb.quad_to(mx + 8.0, chin - 2.0, mx, chin + 1.0);
            pb.quad_to(mx - 8.0, chin - 2.0, mx - 7.0, lower_c.1 + 4.0);
            pb.close();
            pb.finish()
        };
        p.fill(&goatee, hair.scale(0.75), 1.0);
    }
}

/// Age: forehead lines and nasolabial folds.
fn draw_age_lines(p: &mut Painter, f: &Face) {
    let Face {
        t,
        skin,
        fx,
        nose_tip,
        nx,
        mouth_w: mw,
        ..
    } = *f;
    let mx = fx;
    if !t.young {
        for i in 0..3 {
            let y = -34.0 - 4.0 * i as f32;
            p.stroke(
                &quad((fx - 14.0, y), (fx, y - 2.0), (fx + 14.0, y)),
                skin.scale(0.7),
                0.6,
                0.9,
            );
        }
        for side in [-1.0f32, 1.0] {
            p.stroke(
                &quad(
                    (nx + side * 8.0, nose_tip),
                    (nx + side * 13.0, 22.0),
                    (mx + side * (mw + 2.0), MOUTH_Y + 3.0),
                ),
                skin.scale(0.7),
                0.6,
                1.0,
            );
        }
    }
}

/// Hair on top: cap with hairline (receding, bangs), or bald with a side fringe.
fn draw_top_hair(p: &mut Painter, f: &Face) {
    let Face { t, hair, fw, .. } = *f;
    let top_y = FACE_CY - t.face_h;
    match t.hair_style {
        HairStyle::Bald => {
            for side in [-1.0f32, 1.0] {
                let fringe = polygon(&[
                    (side * (fw + 2.0), -30.0),
                    (side * (fw - 3.0), -26.0),
                    (side * (fw - 4.0), -6.0),
                    (side * (fw + 2.0), -4.0),
                ]);
                p.fill(&fringe, hair, 0.9);
            }
            p.fill(&ellipse(-fw * 0.25, top_y + 12.0, 10.0, 5.0), WHITE, 0.25);
        }
        HairStyle::Short | HairStyle::Long => {
            let grow = if t.hair_style == HairStyle::Long {
                6.0
            } else {
                4.0
            };
            // Upper part of the grown outline, from the left temple over the crown to the right.
            let side_y = if t.hair_style == HairStyle::Long {
                10.0
            } else {
                -12.0
            };
            let mut pts: Vec<(f32, f32)> = face_outline(t, grow)
                .into_iter()
                .filter(|(_, y)| *y <= side_y)
                .collect();
            // face_outline goes clockwise from the top: rotate so it runs left→top→right.
            let split = pts.iter().position(|(x, _)| *x < 0.0).unwrap_or(0);
            pts.rotate_left(split);
            if t.wavy {
                for (i, pt) in pts.iter_mut().enumerate() {
                    let k = 1.0 + 0.05 * libm::sinf(i as f32 * 1.3);
                    pt.0 *= k;
                }
            }
            // Hairline, right temple → centre → left temple.
            let temple_y = if t.hair_style == HairStyle::Long {
                8.0
            } else {
                -14.0
            };
            let inner = fw - 4.0;
            let hairline_y = if t.receding { -42.0 } else { -36.0 };
            pts.push((inner, temple_y));
            pts.push((inner - 2.0, -26.0));
            if t.receding {
                pts.push((fw * 0.55, -44.0));
                pts.push((fw * 0.35, -49.0));
                pts.push((fw * 0.1, hairline_y));
                pts.push((-fw * 0.1, hairline_y));
                pts.push((-fw * 0.35, -49.0));
                pts.push((-fw * 0.55, -44.0));
            } else if t.bangs {
                let n = 8;
                pts.push((fw * 0.7, -24.0));
                for i in 0..=n {
                    let x = fw * 0.7 - 1.4 * fw * i as f32 / n as f32;
                    let y = if i % 2 == 0 { -25.0 } else { -29.0 };
                    pts.push((x, y));
                }
            } else {
                pts.push((fw * 0.6, -33.0));
                pts.push((fw * 0.2, hairline_y));
                pts.push((-fw * 0.15, hairline_y - 1.0));
                pts.push((-fw * 0.6, -33.0));
            }
            pts.push((-inner + 2.0, -26.0));
            pts.push((-inner, temple_y));
            let cap = polygon(&pts);
            p.fill(&cap, hair, 1.0);
            // Sheen on the crown.
            p.stroke(
                &quad(
                    (-fw * 0.5, top_y + 3.0),
                    (0.0, top_y - 3.0),
                    (fw * 0.4, top_y + 5.0),
                ),
                hair.scale(1.35),
                0.35,
                2.5,
            );
            if t.sideburns {
                for side in [-1.0f32, 1.0] {
                    p.fill(
                        &polygon(&[
                            (side * (fw - 4.0), -16.0),
                            (side * (fw + 0.5), -16.0),
                            (side * (fw + 0.5), 10.0),
                            (side * (fw - 3.0), 10.0),
                        ]),
                        hair.scale(0.85),
                        1.0,
                    );
                }
            }
        }
    }
}

/// Hat: a crown over the head and a brim across the forehead.
fn draw_hat(p: &mut Painter, f: &Face) {
    let Face { t, l, fw, .. } = *f;
    let top_y = FACE_CY - t.face_h;
    if let Some(hat) = l.hat {
        let crown = {
            let mut pb = PathBuilder::new();
            pb.move_to(-fw - 6.0, -30.0);
            pb.cubic_to(
                -fw - 4.0,
                top_y - 22.0,
                fw + 4.0,
                top_y - 22.0,
                fw + 6.0,
                -30.0,
            );
            pb.close();
            pb.finish()
        };
        p.fill(&crown, hat, 1.0);
        p.fill(&ellipse(0.0, -30.0, fw + 16.0, 5.0), hat.scale(0.75), 1.0);
    }
}

/// Glasses: two rounded frames, a bridge and the arms.
fn draw_glasses(p: &mut Painter, f: &Face) {
    let Face { t, l, fw, fx, .. } = *f;
    if l.glasses {
        let frame = Rgb::u8(30, 30, 35);
        for side in [-1.0f32, 1.0] {
            let ex = fx + side * t.eye_spacing;
            let lens = rounded_rect(ex - 10.5, EYE_Y - 7.5, ex + 10.5, EYE_Y + 7.5, 4.0);
            p.fill(&lens, Rgb::u8(200, 220, 240), 0.18);
            p.stroke(&lens, frame, 1.0, 2.0);
            p.stroke(
                &polyline(&[
                    (ex + side * 10.5, EYE_Y - 4.0),
                    (side * (fw + 1.0), EYE_Y - 5.0),
                ]),
                frame,
                1.0,
                1.8,
            );
        }
        p.stroke(
            &quad(
                (fx - t.eye_spacing + 10.5, EYE_Y - 2.0),
                (fx, EYE_Y - 6.0),
                (fx + t.eye_spacing - 10.5, EYE_Y - 2.0),
            ),
            frame,
            1.0,
            1.8,
        );
    }
}

/// Lighting over the whole picture: brighter towards the light, darker away from it.
fn draw_lighting(p: &mut Painter, f: &Face, (img_w, img_h): (f32, f32)) {
    let Face {
        l, light: (lx, ly), ..
    } = *f;
    let (ax, ay) = (
        img_w * 0.5 + lx * img_w * 0.6,
        img_h * 0.5 + ly * img_h * 0.6,
    );
    let (bx, by) = (
        img_w * 0.5 - lx * img_w * 0.6,
        img_h * 0.5 - ly * img_h * 0.6,
    );
    if let (Some(rect), Some(shader)) = (
        tiny_skia::Rect::from_xywh(0.0, 0.0, img_w, img_h),
        LinearGradient::new(
            Point::from_xy(ax, ay),
            Point::from_xy(bx, by),
            vec![
                GradientStop::new(0.0, WHITE.color(0.25 * l.light_strength)),
                GradientStop::new(0.5, WHITE.color(0.0)),
                GradientStop::new(0.5, BLACK.color(0.0)),
                GradientStop::new(1.0, BLACK.color(0.5 * l.light_strength)),
            ],
            SpreadMode::Pad,
            Transform::identity(),
        ),
    ) {
        let paint = Paint {
            shader,
            ..Paint::default()
        };
        p.pixmap
            .fill_rect(rect, &paint, Transform::identity(), None);
    }
}

fn rounded_rect(l: f32, t: f32, r: f32, b: f32, rad: f32) -> Option<Path> {
    let mut pb = PathBuilder::new();
    pb.move_to(l + rad, t);
    pb.line_to(r - rad, t);
    pb.quad_to(r, t, r, t + rad);
    pb.line_to(r, b - rad);
    pb.quad_to(r, b, r - rad, b);
    pb.line_to(l + rad, b);
    pb.quad_to(l, b, l, b - rad);
    pb.line_to(l, t + rad);
    pb.quad_to(l, t, l + rad, t);
    pb.close();
    pb.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn face(seed: u64) -> (Traits, Look) {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let t = Traits::sample(&mut rng);
        let l = Look::sample(&mut rng, &t);
        (t, l)
    }

    /// FNV-1a over every rendered byte of many faces (both canvases, every part toggled by
    /// some seed): the renderer's output is pinned, so restructuring it cannot move a pixel.
    /// The pixels depend only on the RNG (libm maths, tiny-skia's fixed pipeline).
    #[test]
    fn rendered_pixels_are_pinned() {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for seed in 0..96 {
            let (t, l) = face(seed);
            let canvas = if seed % 2 == 0 {
                Canvas::CelebA
            } else {
                Canvas::Aligned182
            };
            for &byte in render(&t, &l, canvas).as_raw() {
                hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
            }
        }
        assert_eq!(
            hash, 0x9a73_ca98_55a9_2564,
            "rendered faces changed: {hash:#018x}"
        );
    }

    #[test]
    fn rendered_attributes_are_celeba_names() {
        for a in RENDERED_ATTRIBUTES {
            assert!(CELEBA_ATTRIBUTES.contains(&a), "{a}");
        }
    }

    #[test]
    fn labels_are_consistent() {
        for seed in 0..300 {
            let (t, l) = face(seed);
            let v = labels(&t, &l);
            let get = |n: &str| v[crate::celeba::attribute_index(n).unwrap()] == 1;
            let hair = ["Black_Hair", "Blond_Hair", "Brown_Hair", "Gray_Hair"]
                .iter()
                .filter(|n| get(n))
                .count();
            assert!(hair <= 1);
            if get("Bald") {
                assert_eq!(hair, 0);
                assert!(!get("Bangs") && !get("Wavy_Hair") && !get("Straight_Hair"));
            }
            assert!(!(get("No_Beard") && (get("Goatee") || get("Mustache"))));
            if get("Goatee") {
                assert!(get("Mustache") && get("Male"));
            }
            if get("Heavy_Makeup") {
                assert!(get("Wearing_Lipstick"));
            }
            assert!(!(get("Wavy_Hair") && get("Straight_Hair")));
        }
    }

    #[test]
    fn render_fills_the_canvas_and_differs_with_smile() {
        let (t, mut l) = face(7);
        l.blurry = false;
        l.smile = 0.0;
        l.mouth_gap = 0.0;
        let a = render(&t, &l, Canvas::CelebA);
        assert_eq!(a.dimensions(), (178, 218));
        l.smile = 1.0;
        l.mouth_gap = 7.0;
        let b = render(&t, &l, Canvas::CelebA);
        // The mouth region (face space y 15..45 → image rows ~124..154, centre cols) changes a lot.
        let mut changed = 0;
        for y in 118..160 {
            for x in 64..114 {
                let (p, q) = (a.get_pixel(x, y), b.get_pixel(x, y));
                if (0..3).any(|c| p[c].abs_diff(q[c]) > 40) {
                    changed += 1;
                }
            }
        }
        assert!(changed > 150, "only {changed} mouth pixels changed");
        // Nothing outside the mouth area moves (no hidden randomness in render).
        assert_eq!(a.get_pixel(10, 10), b.get_pixel(10, 10));
        assert_eq!(render(&t, &l, Canvas::Aligned182).dimensions(), (182, 182));
    }

    #[test]
    fn smile_is_visible_at_64_after_the_160_crop() {
        use crate::imageops::{crop_or_pad, resize_bilinear, Layout, Sampling};
        let small = |img: &image::RgbImage| -> Vec<f32> {
            let c = crop_or_pad(img.as_raw(), 218, 178, 3, 160, 160);
            let f: Vec<f32> = c.iter().map(|v| *v as f32).collect();
            resize_bilinear(&f, Layout::Hwc, 160, 160, 3, 64, 64, Sampling::TfLegacy)
        };
        for seed in [1, 2, 3] {
            let (t, mut l) = face(seed);
            l.blurry = false;
            (l.smile, l.mouth_gap) = (0.0, 0.0);
            let a = small(&render(&t, &l, Canvas::CelebA));
            (l.smile, l.mouth_gap) = (0.8, 5.0);
            let b = small(&render(&t, &l, Canvas::CelebA));
            let changed = a
                .chunks(3)
                .zip(b.chunks(3))
                .filter(|(p, q)| (0..3).any(|c| (p[c] - q[c]).abs() > 30.0))
                .count();
            assert!(
                changed >= 25,
                "seed {seed}: only {changed} of 4096 pixels changed at 64x64"
            );
        }
    }

    #[test]
    fn every_rendered_attribute_occurs_in_both_classes() {
        let n = 2000;
        let mut pos = [0usize; 40];
        for seed in 0..n {
            let (t, l) = face(seed as u64);
            for (p, v) in pos.iter_mut().zip(labels(&t, &l)) {
                *p += (v == 1) as usize;
            }
        }
        for name in RENDERED_ATTRIBUTES {
            let k = pos[crate::celeba::attribute_index(name).unwrap()];
            assert!(
                k >= n / 100 && k <= n - n / 100,
                "{name}: {k} of {n} positive"
            );
        }
    }
}
