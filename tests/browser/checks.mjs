// The bookkeeping of the browser scripts (walkthrough.mjs, demos.mjs): every
// check is recorded, a step that throws is a failure and the script goes on,
// and finish() lists the failures and exits 1 if there were any.

const failures = [];
let passed = 0;
let currentStep = "";

export function check(cond, what) {
  if (cond) {
    passed++;
    console.log(`  ok   ${what}`);
  } else {
    failures.push(`${currentStep}: ${what}`);
    console.log(`  FAIL ${what}`);
  }
  return cond;
}

export function eq(actual, expected, what) {
  return check(actual === expected, `${what} (got ${JSON.stringify(actual)}, want ${JSON.stringify(expected)})`);
}

// Names what follows (for a check made outside step()).
export function section(name) {
  currentStep = name;
  console.log(`\n== ${name}`);
}

export async function step(name, fn) {
  section(name);
  try {
    await fn();
  } catch (err) {
    failures.push(`${name}: threw ${err && err.stack ? err.stack.split("\n").slice(0, 3).join(" | ") : err}`);
    console.log(`  FAIL threw: ${err}`);
  }
}

export function finish(shots) {
  console.log(`\n${passed} checks passed, ${failures.length} failed; screenshots in ${shots}`);
  if (failures.length) {
    console.log("\nFailures:\n  " + failures.join("\n  "));
    process.exit(1);
  }
}
