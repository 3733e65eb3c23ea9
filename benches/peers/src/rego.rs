//! regorus: the same gates in Rego (`rego/`), run by its interpreter and by
//! its RVM (the policy compiled to bytecode for a register VM).

use std::path::Path;
use std::sync::Arc;

use regorus::languages::rego::compiler::Compiler;
use regorus::rvm::program::Program;
use regorus::rvm::vm::RegoVM;
use regorus::{Engine, Value};

use crate::verdicts::{Gate, Verdicts};

/// The Rego files of the shared threshold library and of one workload.
pub struct Policy {
    /// `data.tollgate.w1.verdicts`.
    pub entry: String,
    engine: Engine,
    program: Arc<Program>,
}

impl Policy {
    /// Loads `rego/threshold.rego` and `rego/{workload}.rego`, and compiles
    /// the workload's `verdicts` rule for the RVM.
    pub fn load(dir: &Path, workload: &str) -> Result<Self, String> {
        let mut engine = Engine::new();
        for file in ["threshold.rego", &format!("{workload}.rego")] {
            let path = dir.join(file);
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("reading {}: {e}", path.display()))?;
            engine
                .add_policy(path.display().to_string(), text)
                .map_err(|e| format!("{}: {e}", path.display()))?;
        }
        let entry = format!("data.tollgate.{workload}.verdicts");
        let compiled = engine
            .compile_with_entrypoint(&entry.as_str().into())
            .map_err(|e| format!("compiling {entry}: {e}"))?;
        let program = Compiler::compile_from_policy(&compiled, &[entry.as_str()])
            .map_err(|e| format!("compiling {entry} for the RVM: {e}"))?;
        Ok(Self {
            entry,
            engine,
            program,
        })
    }

    /// An interpreter with the policy loaded, reused across evaluations.
    pub fn interpreter(&self) -> Interpreter {
        Interpreter {
            engine: self.engine.clone(),
            entry: self.entry.clone(),
        }
    }

    /// A VM with the program loaded, reused across evaluations, with no
    /// instruction limit (its default, 25,000, stops W3's 10,006 series).
    pub fn vm(&self) -> Vm {
        let mut vm = RegoVM::new();
        vm.load_program(Arc::clone(&self.program));
        vm.set_max_instructions(usize::MAX);
        Vm { vm }
    }
}

pub struct Interpreter {
    engine: Engine,
    entry: String,
}

impl Interpreter {
    pub fn eval(&mut self, input: Value) -> Result<Value, String> {
        self.engine.set_input(input);
        self.engine
            .eval_rule(self.entry.clone())
            .map_err(|e| format!("regorus interpreter: {e}"))
    }
}

pub struct Vm {
    vm: RegoVM,
}

impl Vm {
    pub fn eval(&mut self, input: Value) -> Result<Value, String> {
        self.vm.set_input(input);
        self.vm.execute().map_err(|e| format!("regorus RVM: {e}"))
    }
}

/// Snapshot JSON parsed as Rego input.
pub fn parse(bytes: &[u8]) -> Result<Value, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| format!("input is not UTF-8: {e}"))?;
    Value::from_json_str(text).map_err(|e| format!("regorus input: {e}"))
}

/// The `verdicts` object in the common shape.
pub fn verdicts(value: &Value) -> Result<Verdicts, String> {
    let json = serde_json::to_value(value).map_err(|e| format!("regorus result: {e}"))?;
    let bad = || format!("regorus result is not {{decision, gates}}: {json}");
    let decision = json["decision"].as_str().ok_or_else(bad)?.to_string();
    let gates = json["gates"]
        .as_array()
        .ok_or_else(bad)?
        .iter()
        .map(|g| {
            Ok(Gate {
                name: g["name"].as_str().ok_or_else(bad)?.to_string(),
                verdict: g["verdict"].as_str().ok_or_else(bad)?.to_string(),
                observed: g["observed"].as_f64(),
            })
        })
        .collect::<Result<_, String>>()?;
    Ok(Verdicts { decision, gates })
}
