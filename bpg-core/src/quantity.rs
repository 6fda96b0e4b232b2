//! Memory quantities that understand both Spark (`512m`, `2g`) and Kubernetes (`2Gi`, `500M`) notation.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An exact amount of memory, in bytes.
///
/// Parsing accepts Spark's JVM notation (binary units, case-insensitive: `b`, `k`/`kb`, `m`/`mb`,
/// `g`/`gb`, `t`/`tb`, `p`/`pb`) and Kubernetes quantities (`Ki`, `Mi`, `Gi`, `Ti`, `Pi`, `Ei` and the
/// decimal `k`, `M`, `G`, `T`, `P`, `E`). A lowercase `m` is Spark's mebibyte, never Kubernetes'
/// milli: memory fields of a Spark job are Spark settings. Fractions are accepted only when they
/// come out to a whole number of bytes (`1.5g` is `1536m`); a bare number without a unit is
/// rejected, because Spark would read it as MiB and Kubernetes as bytes.
///
/// ```
/// use bpg_core::MemoryQuantity;
/// let q: MemoryQuantity = "2g".parse().unwrap();
/// assert_eq!(q, "2Gi".parse().unwrap());
/// assert_eq!(q.to_spark_string(), "2g");
/// assert_eq!(q.to_kubernetes_string(), "2Gi");
/// assert_eq!("1.5g".parse::<MemoryQuantity>().unwrap().to_spark_string(), "1536m");
/// assert!("2048".parse::<MemoryQuantity>().is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MemoryQuantity {
    bytes: u64,
}

/// Why a memory quantity could not be parsed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid memory quantity {input:?}: {reason} (expected e.g. \"512m\", \"2g\" or \"2Gi\")")]
pub struct QuantityError {
    input: String,
    reason: &'static str,
}

impl QuantityError {
    fn new(input: &str, reason: &'static str) -> Self {
        QuantityError {
            input: input.to_owned(),
            reason,
        }
    }
}

const KI: u64 = 1 << 10;
const MI: u64 = 1 << 20;
const GI: u64 = 1 << 30;
const TI: u64 = 1 << 40;
const PI: u64 = 1 << 50;
const EI: u64 = 1 << 60;

impl MemoryQuantity {
    /// A quantity of exactly `bytes` bytes.
    pub const fn from_bytes(bytes: u64) -> Self {
        MemoryQuantity { bytes }
    }

    /// A quantity of `mib` mebibytes (Spark's `m`).
    pub const fn from_mib(mib: u64) -> Self {
        MemoryQuantity { bytes: mib * MI }
    }

    /// A quantity of `gib` gibibytes (Spark's `g`).
    pub const fn from_gib(gib: u64) -> Self {
        MemoryQuantity { bytes: gib * GI }
    }

    /// The exact number of bytes.
    pub const fn bytes(self) -> u64 {
        self.bytes
    }

    /// Whole mebibytes, rounded up (what Spark allocates for a byte count that is not a whole MiB).
    pub const fn mib_ceil(self) -> u64 {
        self.bytes.div_ceil(MI)
    }

    /// Spark notation with the largest unit that keeps the value exact: `2g`, `1536m`, `100k`, `7b`.
    pub fn to_spark_string(self) -> String {
        let (n, unit) = largest_exact(
            self.bytes,
            &[(PI, "p"), (TI, "t"), (GI, "g"), (MI, "m"), (KI, "k")],
            "b",
        );
        format!("{n}{unit}")
    }

    /// Kubernetes notation with the largest exact binary unit: `2Gi`, `1536Mi`; plain bytes otherwise.
    pub fn to_kubernetes_string(self) -> String {
        let (n, unit) = largest_exact(
            self.bytes,
            &[
                (EI, "Ei"),
                (PI, "Pi"),
                (TI, "Ti"),
                (GI, "Gi"),
                (MI, "Mi"),
                (KI, "Ki"),
            ],
            "",
        );
        format!("{n}{unit}")
    }
}

fn largest_exact(
    bytes: u64,
    units: &[(u64, &'static str)],
    base: &'static str,
) -> (u64, &'static str) {
    if bytes != 0 {
        for &(size, name) in units {
            if bytes.is_multiple_of(size) {
                return (bytes / size, name);
            }
        }
    }
    (bytes, base)
}

fn unit_multiplier(unit: &str) -> Option<u64> {
    // Kubernetes suffixes are case-sensitive; Spark's are not. Check Kubernetes' binary and
    // decimal forms first, then fall back to Spark's case-insensitive binary units.
    let k8s = match unit {
        "Ki" => Some(KI),
        "Mi" => Some(MI),
        "Gi" => Some(GI),
        "Ti" => Some(TI),
        "Pi" => Some(PI),
        "Ei" => Some(EI),
        "M" => Some(1_000_000),
        "G" => Some(1_000_000_000),
        "T" => Some(1_000_000_000_000),
        "P" => Some(1_000_000_000_000_000),
        "E" => Some(1_000_000_000_000_000_000),
        _ => None,
    };
    if k8s.is_some() {
        return k8s;
    }
    match unit.to_ascii_lowercase().as_str() {
        "b" => Some(1),
        "k" | "kb" => Some(KI),
        "m" | "mb" => Some(MI),
        "g" | "gb" => Some(GI),
        "t" | "tb" => Some(TI),
        "p" | "pb" => Some(PI),
        _ => None,
    }
}

impl FromStr for MemoryQuantity {
    type Err = QuantityError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let s = input.trim();
        if s.is_empty() {
            return Err(QuantityError::new(input, "empty"));
        }
        let split = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| QuantityError::new(input, "missing unit"))?;
        let (number, unit) = s.split_at(split);
        if number.is_empty() {
            return Err(QuantityError::new(input, "missing number"));
        }
        let multiplier =
            unit_multiplier(unit).ok_or_else(|| QuantityError::new(input, "unknown unit"))?;
        let (int_part, frac_part) = match number.split_once('.') {
            Some((i, f)) => (i, f),
            None => (number, ""),
        };
        if frac_part.contains('.') || (int_part.is_empty() && frac_part.is_empty()) {
            return Err(QuantityError::new(input, "malformed number"));
        }
        let too_large = || QuantityError::new(input, "too large");
        let int: u64 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().map_err(|_| too_large())?
        };
        let mut bytes = int.checked_mul(multiplier).ok_or_else(too_large)?;
        if !frac_part.is_empty() {
            if frac_part.len() > 18 {
                return Err(QuantityError::new(input, "too many decimal places"));
            }
            let frac: u128 = frac_part
                .parse()
                .map_err(|_| QuantityError::new(input, "malformed number"))?;
            let scale = 10u128.pow(frac_part.len() as u32);
            let scaled = frac * multiplier as u128;
            if !scaled.is_multiple_of(scale) {
                return Err(QuantityError::new(input, "not a whole number of bytes"));
            }
            let extra = u64::try_from(scaled / scale).map_err(|_| too_large())?;
            bytes = bytes.checked_add(extra).ok_or_else(too_large)?;
        }
        Ok(MemoryQuantity { bytes })
    }
}

impl fmt::Display for MemoryQuantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_spark_string())
    }
}

impl Serialize for MemoryQuantity {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_spark_string())
    }
}

impl<'de> Deserialize<'de> for MemoryQuantity {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spark_and_kubernetes_notations_agree() {
        let cases = [
            ("512m", 512 * MI),
            ("512M", 512_000_000),
            ("512Mi", 512 * MI),
            ("2g", 2 * GI),
            ("2G", 2_000_000_000),
            ("2gb", 2 * GI),
            ("2Gi", 2 * GI),
            ("1024k", MI),
            ("1Ki", KI),
            ("7b", 7),
            ("1.5g", 3 * GI / 2),
            ("0.5Gi", GI / 2),
            ("1t", TI),
        ];
        for (input, bytes) in cases {
            assert_eq!(
                input.parse::<MemoryQuantity>().unwrap().bytes(),
                bytes,
                "{input}"
            );
        }
    }

    #[test]
    fn renders_exactly() {
        assert_eq!(
            MemoryQuantity::from_bytes(1536 * MI).to_spark_string(),
            "1536m"
        );
        assert_eq!(
            MemoryQuantity::from_bytes(1536 * MI).to_kubernetes_string(),
            "1536Mi"
        );
        assert_eq!(
            MemoryQuantity::from_bytes(2_000_000_000).to_spark_string(),
            "1953125k"
        );
        assert_eq!(
            MemoryQuantity::from_bytes(1001).to_kubernetes_string(),
            "1001"
        );
        assert_eq!(MemoryQuantity::from_bytes(0).to_spark_string(), "0b");
    }

    #[test]
    fn rejects_bad_quantities() {
        for bad in [
            "",
            "2048",
            "g",
            "1.2.3g",
            "12x",
            "1.0000001k",
            "-1g",
            "99999999999999999999g",
            "1 g",
        ] {
            assert!(
                bad.parse::<MemoryQuantity>().is_err(),
                "{bad:?} should be rejected"
            );
        }
    }
}
