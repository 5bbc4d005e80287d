//! How numbers read in reports and terminal summaries: money to the cent with thousands
//! separated (`1,264,897.27`), counts grouped (`1,000,000`), decimals of any scale, and
//! short axis labels (`1.2M`); and text made safe for HTML.

/// `cents` as money: thousands separated, two decimals (`1,264,897.27`).
pub fn money(cents: i128) -> String {
    decimal(cents, 2)
}

/// A count with thousands separated (`1,000,000`).
pub fn count(n: i128) -> String {
    let sign = if n < 0 { "-" } else { "" };
    format!("{sign}{}", grouped(n.unsigned_abs()))
}

/// A decimal of `scale` digits after the point, stored as `value` (`Decimal128`), with
/// thousands separated: `decimal(126_489_727, 2)` is `1,264,897.27`.
pub fn decimal(value: i128, scale: u32) -> String {
    let sign = if value < 0 { "-" } else { "" };
    let abs = value.unsigned_abs();
    if scale == 0 {
        return format!("{sign}{}", grouped(abs));
    }
    let unit = 10u128.pow(scale.min(38));
    format!(
        "{sign}{}.{:0width$}",
        grouped(abs / unit),
        abs % unit,
        width = scale as usize
    )
}

/// A value on a chart's axis, short: `950`, `12.5`, `3.4k`, `1.2M`, `7.1B`.
pub fn short(value: f64) -> String {
    let abs = value.abs();
    let (scaled, suffix) = if abs >= 1e9 {
        (value / 1e9, "B")
    } else if abs >= 1e6 {
        (value / 1e6, "M")
    } else if abs >= 1e3 {
        (value / 1e3, "k")
    } else {
        (value, "")
    };
    let text = if scaled.abs() >= 100.0 || scaled.fract().abs() < 1e-9 {
        format!("{scaled:.0}")
    } else if scaled.abs() >= 10.0 {
        format!("{scaled:.1}")
    } else {
        format!("{scaled:.2}")
    };
    let text = if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    };
    format!("{text}{suffix}")
}

/// A share as a percentage with one decimal (`12.3%`, `<0.1%` for a small non-zero one).
pub fn percent(share: f64) -> String {
    let percent = share * 100.0;
    if percent > 0.0 && percent < 0.05 {
        "<0.1%".to_string()
    } else {
        format!("{percent:.1}%")
    }
}

/// A byte count for people: `812 B`, `45.3 KB`, `1.8 MB` (powers of 1000).
pub fn bytes(n: u64) -> String {
    let n = n as f64;
    if n < 1e3 {
        format!("{n:.0} B")
    } else if n < 1e6 {
        format!("{:.1} KB", n / 1e3)
    } else if n < 1e9 {
        format!("{:.1} MB", n / 1e6)
    } else {
        format!("{:.2} GB", n / 1e9)
    }
}

/// Text made safe for HTML element content and attribute values: the stage graph's XML
/// escaping, which HTML5 reads the same.
pub use ember_planner::draw::escape_xml as escape;

fn grouped(n: u128) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(d);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_and_counts_are_grouped_by_thousands() {
        assert_eq!(money(126_489_727), "1,264,897.27");
        assert_eq!(money(5), "0.05");
        assert_eq!(money(-100_000), "-1,000.00");
        assert_eq!(count(1_000_000), "1,000,000");
        assert_eq!(count(999), "999");
        assert_eq!(decimal(12_345, 3), "12.345");
        assert_eq!(decimal(-7, 0), "-7");
    }

    #[test]
    fn markup_in_text_is_escaped() {
        assert_eq!(
            escape(r#"<b>"Tom" & 'Jerry'</b>"#),
            "&lt;b&gt;&quot;Tom&quot; &amp; &apos;Jerry&apos;&lt;/b&gt;"
        );
    }

    #[test]
    fn axis_values_and_sizes_are_short() {
        assert_eq!(short(950.0), "950");
        assert_eq!(short(12.5), "12.5");
        assert_eq!(short(3_400.0), "3.4k");
        assert_eq!(short(1_250_000.0), "1.25M");
        assert_eq!(short(2e9), "2B");
        assert_eq!(percent(0.123), "12.3%");
        assert_eq!(percent(0.0001), "<0.1%");
        assert_eq!(bytes(812), "812 B");
        assert_eq!(bytes(1_834_000), "1.8 MB");
    }
}
