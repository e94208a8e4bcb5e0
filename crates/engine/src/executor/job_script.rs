//! A Slurm job script for one stage ([`JobScript`]): `#SBATCH` lines from `[executor]`, the
//! `run-stage` command, and the exit status written beside the log. Every value is written as
//! one `#SBATCH` word exactly as sbatch will read it back ([`sbatch_word`]), and a value that
//! cannot be (a control character) or that would set an option vaepipe sets itself is refused,
//! so an experiment file can never run anything but its declared stages. Pure text; unit-tested.

use std::fmt::Write as _;
use std::path::PathBuf;

use super::slurm::SlurmError;
use super::ExecutorConfig;

/// One stage's job script: `#SBATCH` lines from `[executor]`, then the `run-stage` command, then
/// the exit status written beside the log.
#[derive(Debug, Clone)]
pub struct JobScript<'a> {
    pub experiment: &'a str,
    /// The plan node's name (`b`, `alfa-0.5/b`).
    pub stage: &'a str,
    pub kind: &'a str,
    pub key: &'a str,
    /// `--output`; `%j` is the job id.
    pub log_pattern: PathBuf,
    /// Where the job runs (the submitter's working directory).
    pub chdir: PathBuf,
    /// Job ids of upstream stages submitted in the same run (`afterok`).
    pub after: Vec<String>,
    /// The command line the job runs.
    pub command: Vec<String>,
    pub config: &'a ExecutorConfig,
}

impl JobScript<'_> {
    /// The script's text: one `#SBATCH` line per option, each one quoted word; an error when a
    /// value could not be written safely (a control character).
    pub fn render(&self) -> Result<String, SlurmError> {
        let mut s = String::from("#!/bin/bash\n");
        // The comment is for people; `escape_debug` keeps it on its line whatever the names.
        let _ = writeln!(
            s,
            "# vaepipe job: stage `{}` (kind `{}`) of experiment `{}`, key {}",
            self.stage.escape_debug(),
            self.kind.escape_debug(),
            self.experiment.escape_debug(),
            self.key.escape_debug()
        );
        let mut options = vec![
            format!("--job-name={}", job_name(self.experiment, self.stage)),
            format!("--output={}", self.log_pattern.to_string_lossy()),
            format!("--chdir={}", self.chdir.to_string_lossy()),
        ];
        if let Some(p) = &self.config.partition {
            options.push(format!("--partition={p}"));
        }
        if let Some(a) = &self.config.account {
            options.push(format!("--account={a}"));
        }
        if let Some(t) = &self.config.time {
            options.push(format!("--time={t}"));
        }
        if !self.after.is_empty() {
            // A failed upstream cancels this job instead of leaving it pending forever.
            options.push("--kill-on-invalid-dep=yes".to_owned());
            options.push(format!("--dependency=afterok:{}", self.after.join(":")));
        }
        for extra in self
            .config
            .extra
            .iter()
            .chain(self.config.resources.get(self.kind).into_iter().flatten())
        {
            if let Some(reserved) = super::reserved_option(extra) {
                return Err(SlurmError::Unsafe(format!(
                    "`{extra}` would override vaepipe's own `--{reserved}`"
                )));
            }
            options.push(extra.clone());
        }
        for o in &options {
            let _ = writeln!(s, "#SBATCH {}", sbatch_word(o)?);
        }
        s.push('\n');
        let command: Vec<String> = self.command.iter().map(|a| shell_quote(a)).collect();
        s.push_str(&command.join(" "));
        s.push('\n');
        let rc = self.log_pattern.with_extension("rc");
        let rc = rc.to_string_lossy();
        // `%j` in the pattern is the job id; the shell knows it as $SLURM_JOB_ID.
        let rc = match rc.split_once("%j") {
            Some((before, after)) => format!(
                "{}\"${{SLURM_JOB_ID}}\"{}",
                shell_quote(before),
                shell_quote(after)
            ),
            None => shell_quote(&rc),
        };
        let _ = writeln!(s, "rc=$?\necho \"$rc\" > {rc}\nexit \"$rc\"");
        Ok(s)
    }
}

/// A Slurm job name for a stage: `vaepipe:<experiment>:<stage>`, without spaces.
pub fn job_name(experiment: &str, stage: &str) -> String {
    format!("vaepipe:{experiment}:{stage}")
        .chars()
        .map(|c| if c.is_whitespace() { '_' } else { c })
        .collect()
}

/// Quotes a word for bash (single quotes unless it is plainly safe).
pub fn shell_quote(s: &str) -> String {
    let safe = !s.is_empty()
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'-' | b'_' | b'.' | b'/' | b'=' | b':' | b',' | b'+' | b'@' | b'%'
                )
        });
    if safe {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// An `#SBATCH` word, as sbatch reads those lines: split at whitespace, `'` and `"` quote, a
/// backslash escapes the next character, an unquoted `#` starts a comment, and the line ends at
/// a newline whatever the quoting. A word with anything special is double-quoted with `\` and
/// `"` escaped; a control character cannot be written at all (config rejects them earlier).
pub(crate) fn sbatch_word(s: &str) -> Result<String, SlurmError> {
    if let Some(c) = s.chars().find(|c| c.is_control()) {
        return Err(SlurmError::Unsafe(format!(
            "`{}` holds a control character ({c:?})",
            s.escape_debug()
        )));
    }
    let plain = !s.is_empty()
        && !s
            .chars()
            .any(|c| c.is_whitespace() || matches!(c, '"' | '\'' | '\\' | '#'));
    if plain {
        return Ok(s.to_owned());
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if matches!(c, '"' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn config() -> ExecutorConfig {
        let mut c = ExecutorConfig {
            kind: super::super::ExecutorKind::Slurm,
            partition: Some("gpu".into()),
            account: Some("lab".into()),
            time: Some("4:00:00".into()),
            extra: vec!["--qos=long".into()],
            ..ExecutorConfig::default()
        };
        c.resources.insert(
            "train-vae".into(),
            vec!["--gres=gpu:1".into(), "--cpus-per-task=4".into()],
        );
        c
    }

    fn script<'a>(config: &'a ExecutorConfig, kind: &'a str, after: &[&str]) -> JobScript<'a> {
        JobScript {
            experiment: "smile",
            stage: "alfa-0.5/train",
            kind,
            key: "abc123",
            log_pattern: "/cache/jobs/logs/abc123-%j.log".into(),
            chdir: "/home/me/project dir".into(),
            after: after.iter().map(|s| (*s).to_owned()).collect(),
            command: vec![
                "/usr/bin/vaepipe".into(),
                "run-stage".into(),
                "exp.toml".into(),
                "--set".into(),
                "stage.a.text=it's".into(),
            ],
            config,
        }
    }

    #[test]
    fn job_script_has_the_executor_options_dependencies_and_per_kind_resources() {
        let c = config();
        let text = script(&c, "train-vae", &["12", "13"]).render().unwrap();
        assert_eq!(
            text,
            "#!/bin/bash\n\
             # vaepipe job: stage `alfa-0.5/train` (kind `train-vae`) of experiment `smile`, key abc123\n\
             #SBATCH --job-name=vaepipe:smile:alfa-0.5/train\n\
             #SBATCH --output=/cache/jobs/logs/abc123-%j.log\n\
             #SBATCH \"--chdir=/home/me/project dir\"\n\
             #SBATCH --partition=gpu\n\
             #SBATCH --account=lab\n\
             #SBATCH --time=4:00:00\n\
             #SBATCH --kill-on-invalid-dep=yes\n\
             #SBATCH --dependency=afterok:12:13\n\
             #SBATCH --qos=long\n\
             #SBATCH --gres=gpu:1\n\
             #SBATCH --cpus-per-task=4\n\
             \n\
             /usr/bin/vaepipe run-stage exp.toml --set 'stage.a.text=it'\\''s'\n\
             rc=$?\n\
             echo \"$rc\" > /cache/jobs/logs/abc123-\"${SLURM_JOB_ID}\".rc\n\
             exit \"$rc\"\n"
        );
    }

    #[test]
    fn job_script_without_upstream_jobs_has_no_dependency_and_other_kinds_no_resources() {
        let c = config();
        let text = script(&c, "encode", &[]).render().unwrap();
        assert!(!text.contains("--dependency"), "{text}");
        assert!(!text.contains("--kill-on-invalid-dep"), "{text}");
        assert!(!text.contains("--gres"), "{text}");
        let plain = ExecutorConfig::default();
        let text = script(&plain, "train-vae", &["7"]).render().unwrap();
        assert!(!text.contains("--partition"), "{text}");
        assert!(text.contains("#SBATCH --dependency=afterok:7\n"), "{text}");
    }

    /// sbatch's reading of an `#SBATCH` line (`_get_argument` in Slurm's `sbatch/opt.c`): words
    /// split at unquoted whitespace, `'`/`"` quote, `\` escapes, an unquoted `#` ends the line.
    fn sbatch_words(line: &str) -> Vec<String> {
        let mut words = Vec::new();
        let mut chars = line.chars().peekable();
        loop {
            while chars
                .peek()
                .is_some_and(|c| c.is_whitespace() && *c != '\n')
            {
                chars.next();
            }
            let mut word = String::new();
            let (mut quote, mut escape, mut any) = (None, false, false);
            while let Some(&c) = chars.peek() {
                if c == '\n' || (quote.is_none() && !escape && c.is_whitespace()) {
                    break;
                }
                chars.next();
                any = true;
                if escape {
                    escape = false;
                } else if c == '\\' {
                    escape = true;
                    continue;
                } else if let Some(q) = quote {
                    if c == q {
                        quote = None;
                        continue;
                    }
                } else if c == '"' || c == '\'' {
                    quote = Some(c);
                    continue;
                } else if c == '#' {
                    return words;
                }
                word.push(c);
            }
            if !any {
                return words;
            }
            words.push(word);
        }
    }

    #[test]
    fn each_sbatch_value_reads_back_as_exactly_one_word() {
        for value in [
            "--comment=x\\\"",
            "--comment=a b",
            "--comment='q'",
            "--comment=#not a comment",
            "--comment=back\\slash\\",
            "--qos=long",
            "--comment=\"",
        ] {
            let line = sbatch_word(value).unwrap();
            assert_eq!(sbatch_words(&line), [value], "{value:?} → {line}");
        }
    }

    #[test]
    fn a_newline_in_a_value_cannot_reach_the_job_script() {
        // The review's injection: `extra` with a newline ran `touch INJECTED` in the job's body.
        // Config rejects it at its span; the script writer refuses it too, in case a value
        // reaches it another way (a cache path from `[experiment] cache`).
        let injected = "--comment=x\\\"\ntouch INJECTED\n#";
        let mut c = config();
        c.extra = vec![injected.into()];
        let err = script(&c, "encode", &[]).render().unwrap_err();
        assert!(err.to_string().contains("control character"), "{err}");
        let c = config();
        let mut s = script(&c, "encode", &["1"]);
        s.log_pattern = "/cache\nrm -rf ~/x-%j.log".into();
        assert!(s.render().is_err());
        // Every #SBATCH line of a good script is one word, and the directives stay together
        // before the first command (sbatch stops reading them there).
        let mut c = config();
        c.partition = Some("gpu # not a comment".into());
        c.extra = vec!["--comment=a \"b\" \\c".into()];
        let text = script(&c, "train-vae", &["12"]).render().unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let directives: Vec<&str> = lines
            .iter()
            .filter_map(|l| l.strip_prefix("#SBATCH "))
            .collect();
        assert_eq!(directives.len(), 11, "{text}");
        for d in &directives {
            assert_eq!(sbatch_words(d).len(), 1, "{d}");
        }
        assert!(
            directives.contains(&r#""--partition=gpu # not a comment""#),
            "{text}"
        );
        let first_command = lines
            .iter()
            .position(|l| !l.is_empty() && !l.starts_with('#'))
            .unwrap();
        assert!(lines[first_command..]
            .iter()
            .all(|l| !l.starts_with("#SBATCH")));
    }

    #[test]
    fn a_reserved_option_in_extra_is_refused_by_the_script_writer() {
        let mut c = config();
        c.extra = vec!["--output=/etc/cron.d/x".into()];
        let err = script(&c, "encode", &[]).render().unwrap_err();
        assert!(err.to_string().contains("--output"), "{err}");
    }

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("a/b-c.d"), "a/b-c.d");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("$HOME"), "'$HOME'");
        assert_eq!(job_name("e x", "a/b"), "vaepipe:e_x:a/b");
    }
}
