//! Showback (以租代建: the cloud is paid per department): the optional prices and quotas a cloud
//! office gives the planner, read from CSV like the inventory, and the arithmetic over them.
//!
//! `prices.csv`: `resource,unit,price_per_month`, one line per priced resource — `cpu,core,…`,
//! `memory,GiB,…`, `disk,GiB,…`, `gpu,GPU,…`; a resource left out is not priced (and the
//! report says so where it is asked for). Nothing here invents a price: without the file no
//! cost is computed anywhere. Prices carry no currency; the report's figures are in whatever
//! currency the file's are.
//!
//! `quotas.csv`: `department,cpu_cores,memory_gib,disk_gib,gpus` — what each department may
//! request; the report compares it with what the department's systems request.
//!
//! This module owns parsing and pricing; it does not plan, and it does not decide what is
//! "requested" (the report does: the systems' needs times their replicas).

use std::collections::BTreeMap;

use crate::inventory::{InputError, number, rows};
use crate::{DIMS, Res};

pub const PRICE_HEADER: [&str; 3] = ["resource", "unit", "price_per_month"];
pub const QUOTA_HEADER: [&str; 5] = ["department", "cpu_cores", "memory_gib", "disk_gib", "gpus"];

/// The unit each resource is priced per, in [`crate::DIM_NAMES`] order, and the spellings
/// accepted for it (case-insensitive).
pub const PRICE_UNITS: [(&str, &[&str]); DIMS] =
    [("core", &["core", "cores"]), ("GiB", &["gib"]), ("GiB", &["gib"]), ("GPU", &["gpu", "gpus"])];

/// A monthly price per unit of each resource; `None`: not priced.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Prices(pub [Option<f64>; DIMS]);

/// What one department may request, in the crate's units ([`Res`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quota {
    pub department: String,
    pub limit: Res,
}

/// Reads `prices.csv`. A resource priced twice, an unknown resource, a unit other than the
/// resource's, and a negative or absurd price (over 10⁹ per unit) are refused.
pub fn prices(f: &str, text: &str) -> Result<Prices, InputError> {
    let mut out = Prices::default();
    let mut lines: [usize; DIMS] = [0; DIMS];
    for (line, r) in rows(f, text, &PRICE_HEADER)? {
        let Some(d) = crate::DIM_NAMES.iter().position(|n| *n == r[0]) else {
            return Err(InputError(format!(
                "{f}:{line}: resource '{}' must be one of {}",
                r[0],
                crate::DIM_NAMES.join(", ")
            )));
        };
        let (unit, spellings) = PRICE_UNITS[d];
        if !spellings.contains(&r[1].to_ascii_lowercase().as_str()) {
            return Err(InputError(format!("{f}:{line}: unit '{}' for {} must be {unit}", r[1], r[0])));
        }
        if lines[d] != 0 {
            return Err(InputError(format!("{f}:{line}: {} is already priced on line {}", r[0], lines[d])));
        }
        lines[d] = line;
        out.0[d] = Some(number(f, line, PRICE_HEADER[2], r[2], 1e9)?);
    }
    if out.0.iter().all(Option::is_none) {
        return Err(InputError(format!("{f}: no prices (one line per resource: {})", crate::DIM_NAMES.join(", "))));
    }
    Ok(out)
}

/// Reads `quotas.csv`. A department listed twice is refused; quotas above 1,048,576 cores,
/// 16 PiB of memory, 1 EiB of disk or 65,536 GPUs are refused as typos.
pub fn quotas(f: &str, text: &str) -> Result<Vec<Quota>, InputError> {
    let mut out: Vec<Quota> = Vec::new();
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for (line, r) in rows(f, text, &QUOTA_HEADER)? {
        if let Some(first) = seen.insert(r[0], line) {
            return Err(InputError(format!("{f}:{line}: department '{}' already has a quota on line {first}", r[0])));
        }
        let n = |c: usize, max: f64| number(f, line, QUOTA_HEADER[c], r[c], max);
        out.push(Quota {
            department: r[0].to_string(),
            limit: [
                (n(1, 1_048_576.0)? * 1000.0) as u64,
                (n(2, 16_777_216.0)? * 1024.0) as u64,
                n(3, 1_073_741_824.0)? as u64,
                (n(4, 65_536.0)? * 1000.0) as u64,
            ],
        });
    }
    Ok(out)
}

/// An amount in the units prices and quotas are written in: cores, GiB, GiB, GPUs.
pub fn human(r: &Res) -> [f64; DIMS] {
    [r[0] as f64 / 1000.0, r[1] as f64 / 1024.0, r[2] as f64, r[3] as f64 / 1000.0]
}

/// The monthly cost of `requested`, per resource (`None` where not priced).
pub fn cost(prices: &Prices, requested: &Res) -> [Option<f64>; DIMS] {
    let h = human(requested);
    let mut c = [None; DIMS];
    for d in 0..DIMS {
        c[d] = prices.0[d].map(|p| p * h[d]);
    }
    c
}

/// The resources where `requested` goes over `limit`.
pub fn over(requested: &Res, limit: &Res) -> Vec<&'static str> {
    (0..DIMS).filter(|&d| requested[d] > limit[d]).map(|d| crate::DIM_NAMES[d]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_are_read_per_resource_and_unit() {
        let p = prices("prices.csv", "resource,unit,price_per_month\ncpu,core,30\nmemory,GiB,4.5\ngpu,GPUs,2000\n")
            .unwrap();
        assert_eq!(p.0, [Some(30.0), Some(4.5), None, Some(2000.0)]);
        // 2.5 cores and 3 GiB: 75 + 13.5; disk unpriced.
        assert_eq!(cost(&p, &[2500, 3072, 100, 0]), [Some(75.0), Some(13.5), None, Some(0.0)]);
    }

    #[test]
    fn a_bad_price_file_is_refused_with_file_line_and_column() {
        let head = "resource,unit,price_per_month\n";
        let cases = [
            (
                format!("{head}cpu,core,30\n# fx\nram,GiB,4\n"),
                "p.csv:4: resource 'ram' must be one of cpu, memory, disk, gpu",
            ),
            (format!("{head}memory,GB,4\n"), "p.csv:2: unit 'GB' for memory must be GiB"),
            (format!("{head}cpu,core,30\ncpu,core,31\n"), "p.csv:3: cpu is already priced on line 2"),
            (format!("{head}disk,GiB,cheap\n"), "p.csv:2: price_per_month 'cheap' is not a number"),
            (format!("{head}disk,GiB,-1\n"), "p.csv:2: price_per_month -1 is out of range (0 to 1000000000)"),
            (format!("{head}disk,GiB\n"), "p.csv:2: 2 fields, expected 3"),
            (
                "resource,price\ncpu,3\n".to_string(),
                "p.csv: the header must be resource,unit,price_per_month, not resource,price",
            ),
            (head.to_string(), "p.csv: no prices (one line per resource: cpu, memory, disk, gpu)"),
        ];
        for (text, want) in cases {
            assert_eq!(prices("p.csv", &text).unwrap_err().0, want);
        }
    }

    #[test]
    fn quotas_are_read_once_per_department_and_compared() {
        let head = QUOTA_HEADER.join(",");
        let q = quotas("quotas.csv", &format!("{head}\ndept-01,16,64,1000,0\ndept-02,8,32,500,1\n")).unwrap();
        assert_eq!(q[0], Quota { department: "dept-01".into(), limit: [16_000, 65_536, 1000, 0] });
        assert_eq!(over(&[17_000, 1024, 1000, 250], &q[0].limit), ["cpu", "gpu"]);
        assert!(over(&[16_000, 65_536, 1000, 0], &q[0].limit).is_empty(), "equal to the quota is within it");
        let e = quotas("quotas.csv", &format!("{head}\ndept-01,16,64,1000,0\ndept-01,8,32,500,1\n")).unwrap_err();
        assert_eq!(e.0, "quotas.csv:3: department 'dept-01' already has a quota on line 2");
        let e = quotas("quotas.csv", &format!("{head}\ndept-01,16,sixty,1000,0\n")).unwrap_err();
        assert_eq!(e.0, "quotas.csv:2: memory_gib 'sixty' is not a number");
    }
}
