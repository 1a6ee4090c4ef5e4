//! `--log-dir`: chrony-style per-sample logs for troubleshooting. `measurements.log` gets one
//! line per reply from any source, `statistics.log` one line per regression update; both name
//! the source's address in each line, and a header line starts each file when it is created.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::proto::control::events::{Event, MeasurementRecord, StatisticsRecord};

pub struct StatsLog {
    dir: PathBuf,
    measurements: BufWriter<File>,
    statistics: BufWriter<File>,
}

fn open(path: &Path, header: &str) -> io::Result<BufWriter<File>> {
    let fresh = !path.exists();
    let mut w = BufWriter::new(OpenOptions::new().create(true).append(true).open(path)?);
    if fresh {
        writeln!(w, "{header}")?;
    }
    Ok(w)
}

impl StatsLog {
    /// Opens (creating the directory and files as needed) the logs in `dir`.
    pub fn open(dir: &Path) -> io::Result<StatsLog> {
        std::fs::create_dir_all(dir)?;
        Ok(StatsLog {
            dir: dir.to_path_buf(),
            measurements: open(&dir.join("measurements.log"), MeasurementRecord::HEADER)?,
            statistics: open(&dir.join("statistics.log"), StatisticsRecord::HEADER)?,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes the record an event carries, if it is one. Lines are flushed at once so that a
    /// `tail -f` sees them.
    pub fn record(&mut self, event: &Event) -> io::Result<()> {
        match event {
            Event::Measurement(m) => {
                writeln!(self.measurements, "{m}")?;
                self.measurements.flush()
            }
            Event::Statistics(s) => {
                writeln!(self.statistics, "{s}")?;
                self.statistics.flush()
            }
            _ => Ok(()),
        }
    }
}
