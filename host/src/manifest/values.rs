//! Checks and conversions of single values: Kubernetes names, memory quantities, component
//! paths.

use std::path::{Path, PathBuf};

/// Whether `path` begins with WebAssembly's magic number.
pub(super) fn starts_as_wasm(path: &Path) -> bool {
    use std::io::Read as _;
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut file| file.read_exact(&mut magic))
        .is_ok_and(|()| magic == *b"\0asm")
}

pub(super) fn component_path(base: &Path, image: &str) -> Result<PathBuf, String> {
    let path = lexically_normal(&base.join(image));
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "component `{image}` not found (looked for `{}`); image is a path to a .wasm \
             component, relative to the manifest",
            path.display()
        ))
    }
}

/// `examples/pods/../../target/x.wasm` → `target/x.wasm`, without touching the filesystem (so
/// symlinks are not resolved; `..` at the start of a relative path is kept).
pub(crate) fn lexically_normal(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut normal = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => match normal.components().next_back() {
                Some(Component::Normal(_)) => {
                    normal.pop();
                }
                Some(Component::RootDir) => {}
                _ => normal.push(".."),
            },
            other => normal.push(other.as_os_str()),
        }
    }
    if normal.as_os_str().is_empty() {
        normal.push(".");
    }
    normal
}

/// A Kubernetes quantity as a number: `250m` → 0.25, `128Mi`, `1Gi`, `500M`, `64e6`, `2`.
pub(super) fn parse_quantity(quantity: &str) -> Result<f64, String> {
    let text = quantity.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let invalid = || {
        format!(
            "`{quantity}` is not a quantity; expected a number with an optional suffix (m, k, M, \
             G, T, Ki, Mi, Gi, Ti), like `64Mi` or `250m`"
        )
    };
    let value: f64 = number.parse().map_err(|_| invalid())?;
    let multiplier = match suffix {
        "" => 1.0,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "m" => 1e-3,
        exponent if exponent.starts_with(['e', 'E']) => {
            let power: i32 = exponent[1..].parse().map_err(|_| invalid())?;
            10f64.powi(power)
        }
        _ => return Err(invalid()),
    };
    let value = value * multiplier;
    if !value.is_finite() || value < 0.0 {
        return Err(invalid());
    }
    Ok(value)
}

/// Bytes in a Kubernetes quantity: `128Mi`, `1Gi`, `500M`, `64e6`, `1048576`.
pub(super) fn parse_memory(quantity: &str) -> Result<u64, String> {
    let invalid = || {
        format!(
            "`{quantity}` is not a memory quantity; expected a number with an optional suffix \
             (Ki, Mi, Gi, Ti, k, M, G, T), like `64Mi`"
        )
    };
    if quantity.trim().starts_with('-') {
        return Err(format!("`{quantity}` must be more than 0 bytes"));
    }
    let bytes = parse_quantity(quantity).map_err(|_| invalid())?.ceil();
    if !(bytes.is_finite() && bytes > 0.0) {
        return Err(format!("`{quantity}` must be more than 0 bytes"));
    }
    if bytes > u64::MAX as f64 {
        return Err(format!("`{quantity}` is too large"));
    }
    Ok(bytes as u64)
}

/// Millicores in a Kubernetes CPU quantity: `250m`, `0.5`, `2`; rounded up to a whole
/// millicore, as Kubernetes' `MilliValue` does.
pub(super) fn parse_cpu(quantity: &str) -> Result<u64, String> {
    let invalid = || {
        format!(
            "`{quantity}` is not a CPU quantity; expected cores (`1`, `0.5`) or millicores \
             (`250m`)"
        )
    };
    if quantity.trim().starts_with('-') {
        return Err(format!("`{quantity}` must not be negative"));
    }
    let millicores = (parse_quantity(quantity).map_err(|_| invalid())? * 1000.0).ceil();
    if !millicores.is_finite() || millicores > u32::MAX as f64 {
        return Err(format!("`{quantity}` is more CPU than any host has"));
    }
    Ok(millicores as u64)
}

pub(super) fn check_dns_label(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a valid name: use at most 63 lowercase letters, digits and '-', \
             starting and ending with a letter or digit"
        ))
    }
}

pub(crate) fn check_dns_subdomain(name: &str) -> Result<(), String> {
    if name.len() <= 253 && name.split('.').all(|part| check_dns_label(part).is_ok()) {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a valid name: use lowercase letters, digits, '-' and '.', at most \
             253 characters"
        ))
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_quantities() {
        assert_eq!(parse_memory("64Mi"), Ok(64 << 20));
        assert_eq!(parse_memory("1Gi"), Ok(1 << 30));
        assert_eq!(parse_memory("500M"), Ok(500_000_000));
        assert_eq!(parse_memory("128974848"), Ok(128_974_848));
        assert_eq!(parse_memory("129e6"), Ok(129_000_000));
        assert_eq!(parse_memory("1.5Ki"), Ok(1536));
        assert!(parse_memory("lots").unwrap_err().contains("`lots`"));
        assert!(parse_memory("64MB").is_err());
        assert!(parse_memory("0").is_err());
        assert!(parse_memory("-1Mi").is_err());
    }

    #[test]
    fn component_paths_are_shown_without_detours() {
        assert_eq!(
            lexically_normal(Path::new("examples/pods/../../target/components/x.wasm")),
            Path::new("target/components/x.wasm")
        );
        assert_eq!(lexically_normal(Path::new("../a/./b")), Path::new("../a/b"));
        assert_eq!(lexically_normal(Path::new("/a/../../b")), Path::new("/b"));
    }

    #[test]
    fn names_follow_kubernetes_rules() {
        assert!(check_dns_label("web-1").is_ok());
        assert!(check_dns_label("Web").is_err());
        assert!(check_dns_label("-web").is_err());
        assert!(check_dns_subdomain("pre-stop-hook.v1").is_ok());
    }
}
