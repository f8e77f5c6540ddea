// HpSockException.cs - an hpsock error code as an exception.
using System;

namespace HpSock
{
    /// <summary>An hpsock call failed. <see cref="Code"/> is the negative
    /// error code (an <see cref="HpSockError"/> value or -errno),
    /// <see cref="Name"/> its symbolic name such as "HPS_ENOTFOUND" or
    /// "ECONNRESET".</summary>
    public class HpSockException : Exception
    {
        /// <summary>Creates an exception for an error code.</summary>
        /// <param name="code">The negative error code.</param>
        /// <param name="operation">What failed, for the message (may be null).</param>
        public HpSockException(int code, string? operation = null)
            : base(Describe(code, operation))
        {
            Code = code;
            Name = GetName(code);
            Operation = operation;
        }

        /// <summary>The negative error code.</summary>
        public int Code { get; }

        /// <summary>The code as an <see cref="HpSockError"/> (system errors
        /// keep their numeric value).</summary>
        public HpSockError Error => (HpSockError)Code;

        /// <summary>The symbolic name, e.g. "HPS_ENOTFOUND" or "ECONNRESET".</summary>
        public string Name { get; }

        /// <summary>The operation that failed, or null.</summary>
        public string? Operation { get; }

        /// <summary>The symbolic name of any error code (library or system).</summary>
        /// <param name="code">A negative error code.</param>
        public static string GetName(int code) => hpsock_csharp.hps_err_name(code);

        /// <summary>The symbolic name of an error.</summary>
        /// <param name="error">An error.</param>
        public static string GetName(HpSockError error) => GetName((int)error);

        /// <summary>A human-readable message for any error code.</summary>
        /// <param name="code">A negative error code.</param>
        public static string GetMessage(int code) => hpsock_csharp.hps_strerror(code);

        internal static HpSockException FromCode(int code, string operation) => new HpSockException(code, operation);

        /// <summary>Throws for a non-zero code; returns it otherwise.</summary>
        internal static int Check(int code, string operation)
        {
            if (code < 0) throw new HpSockException(code, operation);
            return code;
        }

        private static string Describe(int code, string? operation)
        {
            string text = $"{GetMessage(code)} ({GetName(code)}, {code})";
            return operation is null ? text : $"{operation}: {text}";
        }
    }
}
