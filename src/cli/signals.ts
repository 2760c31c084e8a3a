/**
 * The signals the CLI takes over, and what happens to one that arrives
 * before the program can act on it. Imports nothing, so the CLI can install
 * it before its heavy modules load: Node's default action for SIGHUP and
 * SIGUSR2 is to die at once, and for SIGUSR1 to open the inspector.
 */

/** Drain then stop; a second one resets what is left. */
export const STOP_SIGNALS = ["SIGTERM", "SIGINT"] as const;
/** Every signal the CLI handles. */
export const HANDLED_SIGNALS = [...STOP_SIGNALS, "SIGHUP", "SIGUSR1", "SIGUSR2"] as const;
export type HandledSignal = (typeof HANDLED_SIGNALS)[number];
export type StopSignal = (typeof STOP_SIGNALS)[number];

/** What the program does with each signal once it is up. */
export interface SignalActions {
  /** SIGTERM, SIGINT. `duringStartup` when it arrived before attach and is replayed. */
  stop(signal: StopSignal, duringStartup: boolean): void;
  /** SIGHUP. Several queued during startup are coalesced into one. */
  reload(duringStartup: boolean): void;
  /** SIGUSR1 and SIGUSR2: nothing to do but say so. */
  ignore(signal: "SIGUSR1" | "SIGUSR2", duringStartup: boolean): void;
  /** An action threw: report it. Nothing thrown in a signal listener may escape, or it would end every session. */
  failed(signal: HandledSignal, error: unknown): void;
}

/** The part of `process` the relay uses, so a test can hand it an EventEmitter. */
export interface SignalSource {
  on(signal: HandledSignal, listener: (signal: HandledSignal) => void): unknown;
}

/**
 * Receives every handled signal from the first moment. Until `attach`, each is
 * queued; a second stop signal while queued calls `impatient` (the operator
 * insists: there is nothing to drain yet). On `attach`, the queue is replayed:
 * the stop signals in order and, unless one of them is there, one reload for
 * any number of SIGHUPs.
 *
 * SIGUSR1: a JavaScript listener replaces the handler Node installs at boot
 * to start the inspector (checked on Node 20 and 24 by test/cli/signals-startup.test.ts);
 * before this listener exists, during Node's own boot, SIGUSR1 still opens it.
 */
export class SignalRelay {
  readonly #queue: HandledSignal[] = [];
  readonly #listener = (signal: HandledSignal): void => this.#receive(signal);
  readonly #impatient: (signal: StopSignal) => void;
  #actions: SignalActions | undefined;

  private constructor(impatient: (signal: StopSignal) => void) {
    this.#impatient = impatient;
  }

  /** Starts listening to every handled signal on `source` (the process). */
  static install(source: SignalSource, impatient: (signal: StopSignal) => void): SignalRelay {
    const relay = new SignalRelay(impatient);
    for (const signal of HANDLED_SIGNALS) source.on(signal, relay.#listener);
    return relay;
  }

  /** Hands signals to `actions` from now on, after replaying those that arrived before. */
  attach(actions: SignalActions): void {
    this.#actions = actions;
    const queued = this.#queue.splice(0);
    const stops = queued.filter(isStopSignal);
    for (const signal of queued) {
      if (signal === "SIGUSR1" || signal === "SIGUSR2") this.#dispatch(signal, true);
    }
    for (const signal of stops) this.#dispatch(signal, true);
    if (stops.length === 0 && queued.includes("SIGHUP")) this.#dispatch("SIGHUP", true);
  }

  #receive(signal: HandledSignal): void {
    if (this.#actions) {
      this.#dispatch(signal, false);
      return;
    }
    if (isStopSignal(signal) && this.#queue.some(isStopSignal)) {
      try {
        this.#impatient(signal);
      } catch {
        // Nothing to report to yet (no logger); the queued stop still stands.
      }
      return;
    }
    this.#queue.push(signal);
  }

  #dispatch(signal: HandledSignal, duringStartup: boolean): void {
    const actions = this.#actions;
    if (!actions) return;
    try {
      if (isStopSignal(signal)) actions.stop(signal, duringStartup);
      else if (signal === "SIGHUP") actions.reload(duringStartup);
      else actions.ignore(signal, duringStartup);
    } catch (error) {
      try {
        actions.failed(signal, error);
      } catch {
        // The reporter itself failed (a closed log destination): stay alive regardless.
      }
    }
  }
}

function isStopSignal(signal: HandledSignal): signal is StopSignal {
  return (STOP_SIGNALS as readonly string[]).includes(signal);
}
