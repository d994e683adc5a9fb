import { lazyAction, type CommandModule } from './index.ts';

/** The shells `completion` writes a script for. */
export const COMPLETION_SHELLS = ['bash', 'zsh', 'fish'] as const;

/** `completion bash|zsh|fish`: a shell completion script on stdout. */
export const completionCommand: CommandModule = {
  name: 'completion',
  register(program, env) {
    program
      .command('completion')
      .description('print a shell completion script: commands, flags, step ids, -o values (e.g. source <(podid-migrate completion bash))')
      .argument('<shell>', `one of ${COMPLETION_SHELLS.join(', ')}`)
      .addHelpText(
        'after',
        [
          '',
          'Install:',
          '  bash  echo \'source <(podid-migrate completion bash)\' >> ~/.bashrc',
          '  zsh   podid-migrate completion zsh > "${fpath[1]}/_podid-migrate"   (then restart zsh)',
          '  fish  podid-migrate completion fish > ~/.config/fish/completions/podid-migrate.fish',
        ].join('\n'),
      )
      .action(lazyAction(env, () => import('../actions/completion.ts')));
  },
};
