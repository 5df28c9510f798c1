/*
 * hull-init: the init process `hull run --init` puts in a container as
 * pid 1, in front of the container's program:
 *
 *     /sbin/hull-init -- PROGRAM [ARG...]
 *
 * A program that never expected to be pid 1 neither reaps the orphans the
 * kernel hands to pid 1 nor gets the default action of signals it does not
 * handle (the kernel protects pid 1 from them), so `docker stop` would wait
 * for its timeout. hull-init runs the program as its child, passes every
 * catchable signal on to it, reaps every child, and exits as the program
 * exits (128+N when a signal N killed it).
 *
 * Built statically (see the Makefile) so it runs in any image.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	int first = 1;
	if (argc > 1 && strcmp(argv[1], "--") == 0)
		first = 2;
	if (first >= argc) {
		fprintf(stderr, "usage: hull-init -- PROGRAM [ARG...]\n");
		return 125;
	}

	/* Everything is blocked here and taken with sigwaitinfo, so no signal
	 * is lost between fork and wait; the child gets the mask back. */
	sigset_t all, old;
	sigfillset(&all);
	sigprocmask(SIG_BLOCK, &all, &old);

	/* Not pid 1 (say, in a shared pid namespace): be the reaper anyway. */
	if (getpid() != 1)
		prctl(PR_SET_CHILD_SUBREAPER, 1);

	pid_t child = fork();
	if (child < 0) {
		perror("hull-init: fork");
		return 125;
	}
	if (child == 0) {
		sigprocmask(SIG_SETMASK, &old, NULL);
		/* Its own process group, so a terminal's signals reach it and
		 * its children as they would without us. */
		setpgid(0, 0);
		if (isatty(STDIN_FILENO))
			tcsetpgrp(STDIN_FILENO, getpid());
		execvp(argv[first], argv + first);
		fprintf(stderr, "hull-init: exec %s: %s\n", argv[first], strerror(errno));
		_exit(errno == ENOENT ? 127 : 126);
	}

	for (;;) {
		siginfo_t si;
		int sig = sigwaitinfo(&all, &si);
		if (sig < 0) {
			if (errno == EINTR)
				continue;
			perror("hull-init: sigwaitinfo");
			return 125;
		}
		if (sig != SIGCHLD) {
			/* Pass it on. SIGSTOP/SIGKILL never reach us. */
			kill(child, sig);
			continue;
		}
		for (;;) {
			int status;
			pid_t pid = waitpid(-1, &status, WNOHANG);
			if (pid <= 0)
				break;
			if (pid != child)
				continue; /* an orphan, reaped */
			if (WIFEXITED(status))
				return WEXITSTATUS(status);
			if (WIFSIGNALED(status))
				return 128 + WTERMSIG(status);
		}
	}
}
