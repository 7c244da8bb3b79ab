/**
 * The Engine API answers builds, pulls, pushes and loads with a stream of JSON messages; an error
 * arrives as a message, not as an HTTP status. These helpers follow such a stream to its end.
 */
import { fail } from '../core/errors.js';
import type { Engine } from './engine.js';

export interface ProgressMessage {
  readonly stream?: string;
  readonly status?: string;
  readonly id?: string;
  readonly progress?: string;
  readonly error?: string;
  readonly errorDetail?: { readonly message?: string };
  readonly aux?: { readonly ID?: string; readonly Digest?: string; readonly Tag?: string; readonly Size?: number };
}

/** Every message of the stream; rejects with the engine's own error message. */
export function followProgress(
  engine: Engine,
  stream: NodeJS.ReadableStream,
  onMessage?: (m: ProgressMessage) => void,
): Promise<ProgressMessage[]> {
  return new Promise((resolve, reject) => {
    engine.modem.followProgress(
      stream,
      (err: Error | null, output: ProgressMessage[]) => {
        if (err) reject(err);
        else resolve(output);
      },
      (m: ProgressMessage) => {
        onMessage?.(m);
      },
    );
  });
}

/** Follow a build to its image ID (sha256:…); the build log goes to onLine, line by line. */
export async function followBuild(engine: Engine, stream: NodeJS.ReadableStream, onLine?: (line: string) => void): Promise<string> {
  const tail: string[] = [];
  let id: string | undefined;
  let failure: string | undefined;
  let partial = '';
  await followProgress(engine, stream, (m) => {
    if (m.stream !== undefined) {
      const text = partial + m.stream;
      const lines = text.split('\n');
      partial = lines.pop() ?? '';
      for (const l of lines) {
        onLine?.(l);
        tail.push(l);
        if (tail.length > 40) tail.shift();
      }
    }
    if (m.aux?.ID) id = m.aux.ID;
    if (m.error) failure = m.errorDetail?.message ?? m.error;
  });
  if (partial) onLine?.(partial);
  if (failure) throw fail.dockerBuildFailed({ failure }, { details: { tail } });
  if (!id) {
    // Old engines without BuildKit print "Successfully built <short id>" and no aux message.
    const short = [...tail]
      .reverse()
      .map((l) => /^Successfully built ([0-9a-f]{12,64})$/.exec(l.trim())?.[1])
      .find(Boolean);
    if (short) id = `sha256:${(await engine.getImage(short).inspect()).Id.replace(/^sha256:/, '')}`;
  }
  if (!id) throw fail.dockerBuildWithoutImage({ details: { tail } });
  return id;
}
