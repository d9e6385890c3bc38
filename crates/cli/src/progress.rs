//! Progress bars for long CLI work. indicatif draws only when stderr is a terminal,
//! so piped output and CI logs stay clean.

use indicatif::{ProgressBar, ProgressStyle};

pub fn bar(length: u64, label: &str) -> ProgressBar {
    let bar = ProgressBar::new(length);
    if let Ok(style) =
        ProgressStyle::with_template("{msg:>24} [{bar:40}] {pos}/{len} ({per_sec}, eta {eta})")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(label.to_owned());
    bar
}
