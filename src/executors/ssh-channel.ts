import type { Client, ClientChannel } from 'ssh2';

export interface ChannelExit {
  readonly code: number | null;
  readonly signal: string | null;
}

/**
 * Exit statuses, recorded from the moment a channel opens: when the exit-status arrives in the
 * same read as the exec's confirmation, ssh2 emits 'exit' before an awaiting caller could listen.
 */
const channelExits = new WeakMap<ClientChannel, ChannelExit>();

/** How the command on this channel exited; undefined until (and unless) the server said. */
export function channelExit(channel: ClientChannel): ChannelExit | undefined {
  return channelExits.get(channel);
}

/** Opens an exec channel for `command` on the connection. */
export function execChannel(client: Client, command: string): Promise<ClientChannel> {
  return new Promise((resolve, reject) => {
    try {
      client.exec(command, (err, channel) => {
        if (err) {
          reject(err);
          return;
        }
        channel.on('exit', (code: number | null, signal?: string) => channelExits.set(channel, { code, signal: signal ?? null }));
        resolve(channel);
      });
    } catch (err) {
      reject(err instanceof Error ? err : new Error(String(err)));
    }
  });
}

/** Runs a short helper command (a `kill`) and ignores its output; gives up after 10 s. */
export async function execQuiet(client: Client, command: string): Promise<void> {
  const channel = await execChannel(client, command);
  await new Promise<void>((resolve) => {
    const timer = setTimeout(() => {
      channel.close();
      resolve();
    }, 10_000);
    channel.once('close', () => {
      clearTimeout(timer);
      resolve();
    });
    channel.resume();
    channel.stderr.resume();
    channel.end();
  });
}
