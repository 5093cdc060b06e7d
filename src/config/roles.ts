import { ConfigError } from '../errors.ts';
import { resolveWebhookUrl } from '../notify/notifier.ts';
import { resolveDashboardAuth } from '../web/auth.ts';
import type { Config } from './load.ts';

/**
 * Settings only some commands use, checked when such a command loads the config — before it
 * opens Redis or anything else — rather than on first use: a worker whose webhook env var is
 * unset must exit 2 at once, not print the error and hang on its open connections. Other
 * commands do not demand them (a laptop running `list` needs no dashboard token).
 */
export type ConfigRole = 'notify' | 'dashboard';

export function checkRoleSettings(config: Config, roles: readonly ConfigRole[], env: NodeJS.ProcessEnv = process.env): void {
  const issues: string[] = [];
  const collect = (check: () => unknown): void => {
    try {
      check();
    } catch (err) {
      if (err instanceof ConfigError) issues.push(...err.issues);
      else throw err;
    }
  };
  const webhook = config.notify.webhook;
  if (roles.includes('notify') && webhook) collect(() => resolveWebhookUrl(webhook, env));
  if (roles.includes('dashboard')) collect(() => resolveDashboardAuth(config, env));
  if (issues.length > 0) throw new ConfigError(issues);
}
