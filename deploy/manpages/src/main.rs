//! `strata-manpages OUT_DIR`: writes strata.8 and strata-loadgen.8 into OUT_DIR from the clap
//! definitions the binaries parse, so the manual says exactly what the binaries take. `make deb`
//! runs it; the pages are never committed.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use strata_manpages::{loadgen_page, strata_page};

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let (Some(dir), None) = (args.next(), args.next()) else {
        eprintln!("usage: strata-manpages OUT_DIR");
        return ExitCode::from(2);
    };
    let dir = PathBuf::from(dir);
    match write_pages(&dir) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("strata-manpages: {e}");
            ExitCode::from(1)
        }
    }
}

fn write_pages(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    for (name, page) in [("strata.8", strata_page()), ("strata-loadgen.8", loadgen_page())] {
        let path = dir.join(name);
        let page = page.map_err(|e| format!("cannot render {name}: {e}"))?;
        std::fs::File::create(&path)
            .and_then(|mut f| f.write_all(&page))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(())
}
